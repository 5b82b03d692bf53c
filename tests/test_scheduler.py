"""The APScheduler wiring: a job per feed, system jobs, backoff skips, leader gating, no head-of-line blocks.

The pipeline here is a recorder (the stages have their own tests); the database and scheduler are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from conftest import make_settings

from monitor.scheduler import MonitorScheduler
from monitor.status import RuntimeStatus
from monitor.store import feeds as feed_store
from monitor.store.db import session_scope
from monitor.timeutil import utcnow


class RecordingPipeline:
    def __init__(self, hang: tuple[str, ...] = ()) -> None:
        self.hang = set(hang)
        self.release = threading.Event()
        self.calls: list[str] = []
        self.evaluations = 0
        self.deliveries = 0
        self._lock = threading.Lock()

    def process_feed(self, feed) -> None:  # noqa: ANN001
        with self._lock:
            self.calls.append(feed.name)
        if feed.name in self.hang:
            self.release.wait(30)

    def evaluate(self) -> list:
        self.evaluations += 1
        return []

    def deliver(self) -> None:
        self.deliveries += 1

    def score_missing(self, **_options: object) -> int:
        return 0

    def count(self, name: str) -> int:
        with self._lock:
            return self.calls.count(name)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def settings_for(tmp_path: Path, feeds: list[dict], **extra: object):  # noqa: ANN201
    return make_settings(tmp_path, feeds=feeds, collect={"jitter": "0s"}, **extra)


def test_jobs_and_their_options(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        [
            {"name": "a", "url": "http://127.0.0.1:9/a", "every": "10m"},
            {"name": "b", "url": "http://127.0.0.1:9/b", "every": "1h"},
            {"name": "off", "url": "http://127.0.0.1:9/off", "enabled": False},
        ],
        evaluate_every="1m",
    )
    pipeline = RecordingPipeline()
    scheduler = MonitorScheduler(settings, sqlite_engine, pipeline)
    scheduler.start()
    try:
        wait_until(lambda: not scheduler.recovering.is_set())  # the one-shot `recover` job has run
        assert scheduler.job_ids() == [
            "database-check",
            "deliver",
            "evaluate",
            "feed:a",
            "feed:b",
            "heartbeat",
            "retention",
            "score-missing",
        ]
        jobs = {job.id: job for job in scheduler.scheduler.get_jobs()}
        for job in jobs.values():
            assert job.coalesce is True and job.max_instances == 1
        assert jobs["feed:a"].trigger.interval == timedelta(minutes=10)
        assert jobs["feed:a"].misfire_grace_time == 600 and jobs["feed:a"].executor == "feeds"
        assert jobs["feed:b"].trigger.interval == timedelta(hours=1)
        assert (
            jobs["evaluate"].trigger.interval == timedelta(minutes=1)
            and jobs["evaluate"].executor == "system"
        )
        assert jobs["deliver"].trigger.interval == settings.notify.deliver_every
        # the first polls happen at start (spread over the jitter), not an interval later
        time.sleep(0.5)
        assert pipeline.count("a") == 1 and pipeline.count("b") == 1 and pipeline.count("off") == 0
    finally:
        scheduler.shutdown()
    assert not scheduler.running


def test_a_hanging_feed_never_delays_the_others(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    feeds = [{"name": "stuck", "url": "http://127.0.0.1:9/s", "every": "1s"}] + [
        {"name": f"quick{i}", "url": f"http://127.0.0.1:9/q{i}", "every": "1s"} for i in range(3)
    ]
    settings = settings_for(tmp_path, feeds, evaluate_every="1s", notify={"deliver_every": "1s"})
    pipeline = RecordingPipeline(hang=("stuck",))
    status = RuntimeStatus(scheduler_expected=True)
    scheduler = MonitorScheduler(settings, sqlite_engine, pipeline, status=status)
    scheduler.start()
    try:
        time.sleep(3.5)
        assert pipeline.count("stuck") == 1  # still inside its first poll; never run twice at once
        for i in range(3):
            assert pipeline.count(f"quick{i}") >= 2
        assert pipeline.evaluations >= 2 and pipeline.deliveries >= 2
        assert status.live_problems() == [] and status.scheduler_running
    finally:
        pipeline.release.set()
        scheduler.shutdown()
    assert not status.scheduler_running


def test_feed_in_backoff_is_skipped_until_due(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [{"name": "failing", "url": "http://127.0.0.1:9/f", "every": "10m"}])
    pipeline = RecordingPipeline()
    scheduler = MonitorScheduler(settings, sqlite_engine, pipeline)
    state = feed_store.ensure_feeds(sqlite_engine, [("failing", "http://127.0.0.1:9/f")], utcnow())["failing"]
    for _ in range(3):  # three failures: next poll 40 minutes away
        feed_store.record_failure(sqlite_engine, state.id, now=utcnow(), error="HTTP 500", http_status=500,
                                  every=timedelta(minutes=10), max_backoff=timedelta(hours=6))  # fmt: skip
    scheduler.run_feed("failing")
    assert pipeline.calls == []
    with session_scope(sqlite_engine) as session:
        feed_store.record_success(session, state.id, now=utcnow() - timedelta(hours=1), status="ok",
                                  http_status=200, every=timedelta(minutes=10))  # fmt: skip
    scheduler.run_feed("failing")
    assert pipeline.calls == ["failing"]


def test_standby_runs_nothing_but_the_heartbeat(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, [{"name": "f", "url": "http://127.0.0.1:9/f", "every": "1s"}], evaluate_every="1s",
        notify={"deliver_every": "1s"},
    )  # fmt: skip
    pipeline = RecordingPipeline()
    status = RuntimeStatus(scheduler_expected=True)
    leader = threading.Event()
    scheduler = MonitorScheduler(settings, sqlite_engine, pipeline, status=status, is_leader=leader.is_set)
    scheduler.start()
    try:
        time.sleep(2.2)
        assert pipeline.calls == [] and pipeline.evaluations == 0 and pipeline.deliveries == 0
        assert status.scheduler_heartbeat is not None
        leader.set()
        scheduler.on_leadership(True)
        time.sleep(2.5)
        assert pipeline.count("f") >= 1 and pipeline.evaluations >= 1
    finally:
        scheduler.shutdown()


def test_restart_resumes_the_feed_rhythm(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [{"name": "calm", "url": "http://127.0.0.1:9/c", "every": "30m"}])
    state = feed_store.ensure_feeds(sqlite_engine, [("calm", "http://127.0.0.1:9/c")], utcnow())["calm"]
    polled = utcnow() - timedelta(minutes=5)
    with session_scope(sqlite_engine) as session:
        feed_store.record_success(session, state.id, now=polled, status="ok", http_status=200,
                                  every=timedelta(minutes=30))  # fmt: skip
    scheduler = MonitorScheduler(settings, sqlite_engine, RecordingPipeline())
    scheduler.start()
    try:
        job = scheduler.scheduler.get_job("feed:calm")
        assert abs(job.next_run_time - (polled + timedelta(minutes=30))) < timedelta(seconds=2)
    finally:
        scheduler.shutdown()
