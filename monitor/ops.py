"""Start-up checks and waits for a long-lived process (`monitor run`, the container).

- `check_data_dir`: a SQLite database on a read-only or full volume is a clear error at start, naming the
  path, instead of a "attempt to write a readonly database" from deep inside the first job.
- `wait_for_database`: a database that is unreachable at start (PostgreSQL still starting, a network blip) is
  retried with exponential backoff and logged each time, while the HTTP server already answers /healthz and
  reports the reason on /readyz; the wait ends early on shutdown (SIGTERM).
- `check_database`: the scheduler's `database-check` job while the process runs: a schema dropped under it is
  upgraded again, and a database that answers reads but refuses writes fails the job, which /readyz reports.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine, make_url

from monitor.store.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    DatabaseError,
    check_connection,
    check_writable,
    error_reason,
)
from monitor.store.migrate import ensure_schema, upgrade

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 20 * 1024 * 1024


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL, or None (PostgreSQL, in-memory)."""
    try:
        url = make_url(database_url)
    except Exception:  # noqa: BLE001 - create_db_engine reports bad URLs
        return None
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def check_data_dir(database_url: str, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Raise DatabaseError naming the path when a SQLite database cannot be written (read-only, full)."""
    path = sqlite_path(database_url)
    if path is None:
        return
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the database folder {folder}: {exc.strerror}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DatabaseError(f"no space left on the device of {folder} (database {path})") from None
        raise DatabaseError(
            f"the database folder {folder} is not writable by uid {os.getuid()} ({exc.strerror}); "
            "SQLite needs to write the database and its -wal/-shm files there"
        ) from None
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.exists() and not os.access(candidate, os.W_OK):
            raise DatabaseError(f"the database file {candidate} is read-only for uid {os.getuid()}")
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise DatabaseError(
            f"only {free // (1024 * 1024)} MB free on the device of {folder} (database {path}); "
            f"at least {min_free_bytes // (1024 * 1024)} MB are needed"
        )


def wait_for_database(
    engine: Engine,
    stop: threading.Event,
    *,
    migrate: bool = True,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
    on_attempt: Callable[[int, str | None], None] | None = None,
) -> bool:
    """Connect (and upgrade the schema), retrying with exponential backoff until it works or `stop` is set.

    Returns True when the database is ready, False when stopped first. `on_attempt(attempt, error)` is called
    after each try (error None on success), e.g. to show the reason on /readyz.
    """
    delay = first_delay
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            check_connection(engine)
            if migrate:
                upgrade(engine)
        except DatabaseError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the database went away between check and upgrade
            error = f"database error: {error_reason(exc)}"
        else:
            if on_attempt is not None:
                on_attempt(attempt, None)
            if attempt > 1:
                log.info("database reachable after %d attempts", attempt, extra={"attempts": attempt})
            return True
        if on_attempt is not None:
            on_attempt(attempt, error)
        log.warning("%s; retrying in %.0f s", error, delay, extra={"attempt": attempt, "retry_in_s": delay})
        if stop.wait(delay):
            break
        delay = min(max_delay, delay * 2)
    return False


def check_database(engine: Engine, *, write_timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Raise DatabaseError unless the schema is at this version's head (upgrading a missing one first) and a
    write transaction can start within `write_timeout` (the busy timeout every real write waits)."""
    check_connection(engine)
    ensure_schema(engine)
    check_writable(engine, timeout=write_timeout)
