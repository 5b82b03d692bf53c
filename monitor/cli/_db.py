"""`monitor db ...`: schema management."""

from __future__ import annotations

import click

from monitor.cli._common import App, handle_errors
from monitor.store.db import safe_url
from monitor.store.migrate import current_revision


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.pass_obj
@handle_errors
def db_upgrade(app: App) -> None:
    """Create or migrate the schema to the latest revision."""
    engine = app.engine(migrate=True)
    click.echo(f"database {safe_url(app.settings.database_url)} at revision {current_revision(engine)}")
