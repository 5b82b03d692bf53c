"""notify stage."""
