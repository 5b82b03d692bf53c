"""Leader election between `monitor run` replicas that share one database.

Exactly one replica (the leader) schedules collection, evaluates the rules, delivers notifications and runs
retention; the others serve the API and dashboard and take over when the leader goes away.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated autocommit
  connection. PostgreSQL releases it the moment the leader's session ends: the process exits, is killed (-9)
  or crashes, or its host disappears (detected by TCP keepalives set on the session, ~30 s). Standbys retry
  every `check_every`; the leader re-checks its own session as often and steps down if it is gone.
- SQLite (a file): an exclusive `flock` on `<database file>.leader`, released by the kernel when the process
  dies; two processes on one host elect the same way.
- In-memory SQLite: a single process, always the leader.

Advisory locks are per database, so deployments on different databases of one server never compete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# An arbitrary constant (the schema upgrade lock in monitor/store/migrate.py uses ..001).
LEADER_LOCK_KEY = 7_304_211_002
DEFAULT_CHECK_EVERY = 10.0


def replica_id() -> str:
    """How this process names itself in logs and in pg_stat_activity: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Lock(Protocol):
    kind: str

    def acquire(self) -> bool: ...

    def verify(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str | None: ...


class AlwaysLeader:
    """A single-process deployment (in-memory SQLite): nothing to elect."""

    kind = "single"

    def acquire(self) -> bool:
        return True

    def verify(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def holder(self) -> str | None:
        return replica_id()


class PostgresAdvisoryLock:
    """`pg_try_advisory_lock` held by a dedicated connection (not from the application's pool)."""

    kind = "postgresql"

    def __init__(self, url: URL, key: int = LEADER_LOCK_KEY, connect_timeout: int = 5) -> None:
        self.key = key
        self._engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": connect_timeout,
                "application_name": f"monitor-leader {replica_id()}"[:63],
                # Client side: notice a dead server or network quickly instead of hanging in a check.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            },
        )
        self._connection: sa.Connection | None = None

    def _connect(self) -> sa.Connection:
        if self._connection is None:
            connection = self._engine.connect()
            # Server side: a leader whose host vanished loses its session (and the lock) in ~30 s.
            for setting, value in (
                ("tcp_keepalives_idle", 10),
                ("tcp_keepalives_interval", 5),
                ("tcp_keepalives_count", 3),
            ):
                connection.execute(sa.text(f"SET {setting} = {int(value)}"))
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
                self._connection.close()
            self._connection = None

    def acquire(self) -> bool:
        try:
            connection = self._connect()
            got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
        except Exception as exc:  # noqa: BLE001 - an unreachable database means "not leader now", not a crash
            log.warning("leader election: database unreachable: %s", _first_line(exc))
            self._drop()
            return False
        if not got:
            # Keep no idle connection while standing by.
            self._drop()
        return bool(got)

    def verify(self) -> bool:
        """Our session is alive and still holds the lock."""
        if self._connection is None:
            return False
        try:
            held = self._connection.execute(
                sa.text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid::bigint = :hi AND objid::bigint = :lo"
                    " AND objsubid = 1)"
                ),
                {"hi": (self.key >> 32) & 0xFFFFFFFF, "lo": self.key & 0xFFFFFFFF},
            ).scalar()
        except Exception as exc:  # noqa: BLE001
            log.warning("leader election: lost the leader connection: %s", _first_line(exc))
            self._drop()
            return False
        if not held:
            self._drop()
        return bool(held)

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self._drop()

    def holder(self) -> str | None:
        """The application_name of the session holding the lock (for logs), or None."""
        try:
            with self._engine.connect() as connection:
                return connection.execute(
                    sa.text(
                        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :hi"
                        " AND l.objid::bigint = :lo AND l.objsubid = 1 AND l.database ="
                        " (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    {"hi": (self.key >> 32) & 0xFFFFFFFF, "lo": self.key & 0xFFFFFFFF},
                ).scalar()
        except Exception:  # noqa: BLE001
            return None

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()


class FileLock:
    """An exclusive, non-blocking `flock` on a file next to the SQLite database."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LeaderElectionError(
                f"cannot create the leader lock file {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{replica_id()}\n".encode())
        self._fd = fd
        return True

    def verify(self) -> bool:
        """Still the file others lock: if it was deleted or replaced, step down (never two leaders)."""
        if self._fd is None:
            return False
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            same = False
        if not same:
            self.release()
        return same

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None


class LeaderElectionError(Exception):
    """Leader election cannot work at all (e.g. the lock file cannot be created)."""


def lock_for_engine(engine: Engine) -> _Lock:
    """The election mechanism that fits the database behind `engine`."""
    if engine.dialect.name == "postgresql":
        return PostgresAdvisoryLock(engine.url)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            return FileLock(Path(database).with_name(Path(database).name + ".leader"))
    return AlwaysLeader()


class LeaderElector:
    """Keeps trying to become (and stay) the leader in a background thread.

    `is_leader` is a plain attribute read: jobs check it at their start. `on_change(is_leader)` is called from
    the elector's thread on every transition (including the final step-down in `stop`).
    """

    def __init__(
        self,
        lock: _Lock,
        *,
        check_every: float = DEFAULT_CHECK_EVERY,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.lock = lock
        self.check_every = check_every
        self.on_change = on_change
        self._leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_lock = threading.Lock()

    @classmethod
    def for_engine(
        cls,
        engine: Engine,
        *,
        check_every: float = DEFAULT_CHECK_EVERY,
        on_change: Callable[[bool], None] | None = None,
    ) -> LeaderElector:
        return cls(lock_for_engine(engine), check_every=check_every, on_change=on_change)

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def kind(self) -> str:
        return self.lock.kind

    def check(self) -> bool:
        """One round: a standby tries to take the lock, the leader verifies it still holds it."""
        with self._check_lock:
            if self._stop.is_set():
                return self._leader
            leader = self.lock.verify() if self._leader else self.lock.acquire()
            self._set(leader)
            return leader

    def _set(self, leader: bool, *, stopping: bool = False) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        if leader:
            log.info(
                "became the leader: scheduling collection, rules, delivery and retention",
                extra={"replica": replica_id(), "election": self.lock.kind},
            )
        elif stopping:
            log.info("leadership released (shutting down)", extra={"replica": replica_id()})
        else:
            log.warning("not the leader any more: standing by", extra={"replica": replica_id()})
        self._announce(leader)

    def _announce(self, leader: bool) -> None:
        if self.on_change is not None:
            try:
                self.on_change(leader)
            except Exception:  # noqa: BLE001 - a failing callback must not stop the election
                log.exception("leader on_change callback failed")

    def start(self) -> None:
        """Check once now (so the first leader starts at once), then every `check_every` in a thread."""
        self.check()
        if not self._leader:
            self._announce(False)  # say "standby" once, so /healthz shows leader=false rather than unknown
            log.info(
                "standing by: another replica is the leader",
                extra={"replica": replica_id(), "leader": self.lock.holder(), "election": self.kind},
            )
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - keep electing; a transient error is retried next round
                log.exception("leader election check failed")
                with self._check_lock:
                    self._set(False)

    def stop(self) -> None:
        """Step down and release the lock now, so a standby takes over without waiting for a timeout."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._check_lock:
            was_leader = self._leader
            self.lock.release()
            if was_leader:
                self._set(False, stopping=True)
        dispose = getattr(self.lock, "dispose", None)
        if dispose is not None:
            dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
