"""Runtime status of the running process, read by `/healthz` and `/readyz`.

`monitor run` creates one `RuntimeStatus`, passes it to `monitor.api.create_app`, and updates it as
the scheduler starts and stops, the model loads, leadership changes and each scheduled job ends. Plain
attribute writes under a lock: the scheduler threads write, the HTTP server reads.

Job outcomes make readiness honest: a database that answers `SELECT 1` while every job fails (its schema
dropped, its file locked by another writer) is not ready. Only fixed job names are kept (`evaluate`,
`deliver`, `database-check`, ...), never feed names: the probes are open without the API token.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.timeutil import isoformat, utcnow

# A failed run keeps the process "not ready" this long after it, unless a later run of the job succeeds:
# a blip in a job that runs every six hours must not take the replica out of service until its next run.
JOB_FAILURE_WINDOW = timedelta(minutes=5)


@dataclass
class JobHealth:
    """A scheduled job's latest run; `failures` counts the failed runs since its last success."""

    last_run: datetime
    failures: int = 0
    failing_since: datetime | None = None
    error: str | None = None
    database: bool = False  # the latest failure came from the database driver


@dataclass
class RuntimeStatus:
    """What the health endpoints report.

    scheduler_expected: the process runs a scheduler (`monitor run`); /healthz fails while it is not running
        or its heartbeat is older than `heartbeat_timeout`.
    model_expected: /readyz fails until `mark_model_loaded` was called.
    """

    scheduler_expected: bool = False
    model_expected: bool = False
    heartbeat_timeout: timedelta = timedelta(minutes=5)
    started_at: datetime = field(default_factory=utcnow)
    scheduler_running: bool = False
    scheduler_heartbeat: datetime | None = None
    model_loaded: bool = False
    model_name: str | None = None
    leader: bool | None = None  # None: no leader election in use
    broker_expected: bool = False  # a task-queue broker is configured (MONITOR_BROKER_URL)
    broker_checked: datetime | None = None
    broker_error: str | None = None
    leader_since: datetime | None = None
    jobs: dict[str, JobHealth] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # ------------------------------------------------------------------ writers (called by `monitor run`)

    def mark_scheduler(self, running: bool) -> None:
        with self._lock:
            self.scheduler_running = running
            if running:
                self.scheduler_heartbeat = utcnow()

    def heartbeat(self) -> None:
        """Called by a periodic scheduler job: proves the scheduler still runs jobs."""
        with self._lock:
            self.scheduler_heartbeat = utcnow()

    def mark_model_loaded(self, name: str | None = None) -> None:
        with self._lock:
            self.model_loaded = True
            self.model_name = name

    def record_job(
        self, job: str, error: str | None, *, database: bool = False, now: datetime | None = None
    ) -> None:
        """A scheduled run of `job` ended: `error` None on success, else the reason (one line);
        `database` when the database raised it (cleared by `database_recovered`)."""
        now = now or utcnow()
        with self._lock:
            health = self.jobs.setdefault(job, JobHealth(last_run=now))
            health.last_run = now
            if error is None:
                health.failures, health.failing_since, health.error = 0, None, None
                return
            health.failures += 1
            health.failing_since = health.failing_since or now
            health.error = error[:300]
            health.database = database

    def database_recovered(self, since: datetime) -> None:
        """A database check that started at `since` passed: database failures recorded before it are over.

        A job that runs every ten minutes must not keep the replica unready for that long after a database
        outage (or a dropped schema) was repaired; failures of any other kind wait for the job's next run.
        """
        with self._lock:
            for health in self.jobs.values():
                if health.failures and health.database and health.last_run <= since:
                    health.failures, health.failing_since, health.error = 0, None, None

    def set_broker(self, error: str | None) -> None:
        """The latest broker check (the `queue-depth` job): None when it answered."""
        with self._lock:
            self.broker_checked = utcnow()
            self.broker_error = error[:300] if error else None

    def set_leader(self, leader: bool) -> None:
        with self._lock:
            if leader and not self.leader:
                self.leader_since = utcnow()
            if not leader:
                self.leader_since = None
            self.leader = leader

    # ------------------------------------------------------------------ readers (the HTTP server)

    def live_problems(self, now: datetime | None = None) -> list[str]:
        """Why the process is not healthy; empty when it is."""
        now = now or utcnow()
        problems: list[str] = []
        with self._lock:
            if self.scheduler_expected:
                if not self.scheduler_running:
                    problems.append("scheduler not running")
                elif self.scheduler_heartbeat and now - self.scheduler_heartbeat > self.heartbeat_timeout:
                    problems.append(f"scheduler heartbeat stale since {isoformat(self.scheduler_heartbeat)}")
        return problems

    def ready_problems(self, now: datetime | None = None) -> list[str]:
        """Why the process should not get traffic: the model not loaded yet, or jobs failing lately."""
        now = now or utcnow()
        problems: list[str] = []
        with self._lock:
            if self.model_expected and not self.model_loaded:
                problems.append("model not loaded")
            if self.broker_expected and self.broker_error:
                problems.append(f"broker unreachable: {self.broker_error}")
            elif self.broker_expected and self.broker_checked is None:
                problems.append("broker not checked yet")
            for name, health in sorted(self.jobs.items()):
                if health.failures and now - health.last_run <= JOB_FAILURE_WINDOW:
                    problems.append(
                        f"job {name!r} failing since {isoformat(health.failing_since)} "
                        f"({health.failures} failed runs): {health.error}"
                    )
        return problems

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "started_at": isoformat(self.started_at),
                "scheduler": {
                    "expected": self.scheduler_expected,
                    "running": self.scheduler_running,
                    "heartbeat": isoformat(self.scheduler_heartbeat),
                },
                "model": {
                    "expected": self.model_expected,
                    "loaded": self.model_loaded,
                    "name": self.model_name,
                },
                "leader": self.leader,
                "leader_since": isoformat(self.leader_since),
                "broker": None
                if not self.broker_expected
                else {
                    "ok": self.broker_checked is not None and not self.broker_error,
                    "error": self.broker_error,
                },
            }
