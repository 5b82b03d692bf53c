"""Engines and sessions. SQLite (WAL, busy timeout) by default; PostgreSQL via the URL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """The database cannot be reached or used; the message names the URL (without its password)."""


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as a placeholder
        return "<unparseable database URL>"


def _normalize(url: str) -> str:
    # postgres:// and postgresql:// mean psycopg 3 here (psycopg2 is not a dependency).
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_db_engine(url: str) -> Engine:
    """Create the engine; for SQLite, create the folder and turn on WAL, busy timeout and foreign keys."""
    url = _normalize(url)
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise DatabaseError(f"invalid database URL {safe_url(url)!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the folder of the SQLite database {safe_url(url)}: {exc.strerror or exc}"
                ) from None
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except (ImportError, sa.exc.ArgumentError) as exc:  # unknown dialect or driver not installed
        raise DatabaseError(f"unsupported database URL {safe_url(url)}: {exc}") from None


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def error_reason(exc: BaseException) -> str:
    """The first line of a driver error: the SQL and parameters after it stay out of probes and logs."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_connection(engine: Engine) -> None:
    """Raise DatabaseError with a clear message when the database cannot be reached."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        raise DatabaseError(
            f"database unreachable at {safe_url(str(engine.url))}: {error_reason(exc)}"
        ) from None


def check_writable(engine: Engine, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Raise DatabaseError when a write transaction cannot start, even though reads may still work.

    A SQLite file whose write lock another process holds longer than `timeout` (the busy timeout every write
    waits), or a PostgreSQL that is read-only (a hot standby, `default_transaction_read_only`): `SELECT 1`
    succeeds while every write fails. Nothing is written: SQLite takes the write lock and releases it.
    """
    try:
        with engine.connect() as connection:
            if is_sqlite(engine):
                _sqlite_write_lock(connection, timeout)
            elif connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
                raise DatabaseError(f"database at {safe_url(str(engine.url))} is read-only: writes fail")
    except DatabaseError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DatabaseError(
            f"database at {safe_url(str(engine.url))} refuses writes: {error_reason(exc)}"
        ) from None


def _sqlite_write_lock(connection: sa.Connection, timeout: float) -> None:
    connection.exec_driver_sql(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the lock a write needs, within the busy timeout
        connection.exec_driver_sql("ROLLBACK")
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
