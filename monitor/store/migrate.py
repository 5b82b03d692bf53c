"""Schema migrations (Alembic) behind `monitor db upgrade`; `run` and `collect` call `upgrade` on start.

`monitor run` also checks the schema while it runs (`ensure_schema`, and `/readyz` through `schema_problem`):
a database dropped and recreated empty under a running process is upgraded again instead of failing every job.
"""

from __future__ import annotations

import functools
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

from monitor.store.db import DatabaseError, safe_url

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


def head_revision(_engine: Engine | None = None) -> str | None:
    """The revision this version of the code expects (the same for every database)."""
    return _script().get_current_head()


@functools.cache
def _script() -> ScriptDirectory:
    # Read once: /readyz asks on every probe.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def _known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises for a revision it has never heard of
        return False


def schema_problem(engine: Engine) -> str | None:
    """Why the schema does not fit this version (missing, behind or ahead of it); None when it is at head."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return None
    where = safe_url(str(engine.url))
    if current is None:
        return f"database schema missing at {where} (no alembic_version); expected revision {head}"
    if _known(current):
        return f"database schema at {where} is at revision {current}, behind this version's {head}"
    return (
        f"database schema at {where} is at revision {current}, unknown to this version (head {head}): "
        "a newer version migrated it; upgrade this replica"
    )


def ensure_schema(engine: Engine) -> str | None:
    """Upgrade again (under the migration lock) a schema that is missing or behind, e.g. a database dropped
    and recreated empty under a running process. A schema ahead of this version raises DatabaseError: it is
    never downgraded."""
    problem = schema_problem(engine)
    if problem is None:
        return head_revision()
    current = current_revision(engine)
    if current is not None and not _known(current):
        raise DatabaseError(problem)
    log.warning("%s: upgrading", problem, extra={"revision": current})
    return upgrade(engine)


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
