"""Schema migrations (Alembic) behind `monitor db upgrade`; `run` and `collect` call `upgrade` on start."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary constant: the PostgreSQL advisory lock key that serialises concurrent upgrades.
_UPGRADE_LOCK_KEY = 7_304_211_001


@contextmanager
def _sqlite_upgrade_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if (
        engine.dialect.name != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        yield
        return
    import fcntl

    path = Path(database).with_name(Path(database).name + ".migrate-lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to the latest revision. Safe when several replicas start at once."""
    before = current_revision(engine)
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # Two replicas upgrading at once: the second waits here, then finds nothing to do.
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _UPGRADE_LOCK_KEY})
                connection.commit()
    else:
        # SQLite: two processes on one database file (replicas on a shared volume) take turns on a file lock;
        # SQLite's own locking does not cover alembic's check-then-create.
        with _sqlite_upgrade_lock(engine), engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    revision = current_revision(engine)
    # Only a real change is news; every command upgrades on start.
    level = logging.INFO if revision != before else logging.DEBUG
    log.log(
        level, "database schema at revision %s", revision, extra={"revision": revision, "previous": before}
    )
    return revision
