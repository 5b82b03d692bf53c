"""AI-chip news and sentiment monitor."""

__version__ = "0.1.0"
