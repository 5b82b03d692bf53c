"""api stage: the HTTP server (health, metrics, JSON API, dashboard). See monitor/api/app.py."""

from monitor.api.app import create_app

__all__ = ["create_app"]
