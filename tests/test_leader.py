"""Leader election mechanics on the real databases (the two-process test is in test_replicas.py)."""

from __future__ import annotations

import sqlalchemy as sa

from monitor.leader import (
    AlwaysLeader,
    FileLock,
    LeaderElector,
    PostgresAdvisoryLock,
    lock_for_engine,
)
from monitor.store.db import create_db_engine


def _elector(engine: sa.Engine, changes: list[bool]) -> LeaderElector:
    return LeaderElector(lock_for_engine(engine), check_every=0.1, on_change=changes.append)


def test_exactly_one_leader_and_handover(engine):
    """Two electors on one database: one leads; when it steps down the other takes over."""
    other_engine = create_db_engine(str(engine.url.render_as_string(hide_password=False)))
    first_changes: list[bool] = []
    second_changes: list[bool] = []
    first, second = _elector(engine, first_changes), _elector(other_engine, second_changes)
    try:
        assert first.check() is True
        assert second.check() is False
        assert first.check() is True  # the leader re-verifies and stays leader
        assert second.check() is False
        assert first.kind in ("postgresql", "file")
        holder = second.lock.holder()
        assert holder and str(__import__("os").getpid()) in holder

        first.stop()
        assert first.is_leader is False
        assert second.check() is True
        assert first_changes == [True, False]
        assert second_changes == [True]
    finally:
        first.stop()
        second.stop()
        other_engine.dispose()


def test_postgres_leader_steps_down_when_its_session_dies(engine):
    if engine.dialect.name != "postgresql":
        return
    first = LeaderElector(PostgresAdvisoryLock(engine.url), check_every=0.1)
    second = LeaderElector(PostgresAdvisoryLock(engine.url), check_every=0.1)
    try:
        assert first.check() is True
        assert second.check() is False
        # The leader's session is killed (as when its host or the network goes away).
        with engine.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'monitor-leader %' AND datname = current_database()"
                    " AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
                )
            ).all()
        assert len(killed) == 1
        assert second.check() is True
        assert first.check() is False  # it notices and stands by
        assert first.check() is False  # and cannot take the lock back while the other holds it
    finally:
        first.stop()
        second.stop()


def test_file_lock_is_exclusive_and_steps_down_if_the_file_is_replaced(tmp_path):
    path = tmp_path / "monitor.db.leader"
    first, second = FileLock(path), FileLock(path)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.verify() is True
    path.unlink()
    assert first.verify() is False  # someone else could now lock a new file: step down
    assert second.acquire() is True
    second.release()


def test_lock_choice(tmp_path):
    assert isinstance(lock_for_engine(create_db_engine("sqlite://")), AlwaysLeader)
    lock = lock_for_engine(create_db_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "x.db.leader"


def test_background_thread_takes_over(engine):
    import time

    first, second = _elector(engine, []), _elector(engine, [])
    try:
        first.start()
        second.start()
        assert first.is_leader and not second.is_leader
        first.stop()
        deadline = time.monotonic() + 5
        while not second.is_leader and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.is_leader
    finally:
        first.stop()
        second.stop()
