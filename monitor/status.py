"""Runtime status of the running process, read by `/healthz` and `/readyz`.

`monitor run` creates one `RuntimeStatus`, passes it to `monitor.api.create_app`, and updates it as
the scheduler starts and stops, the model loads and leadership changes. Plain attribute writes
under a lock: the scheduler threads write, the HTTP server reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.timeutil import isoformat, utcnow


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
    leader_since: datetime | None = None
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

    def ready_problems(self) -> list[str]:
        with self._lock:
            if self.model_expected and not self.model_loaded:
                return ["model not loaded"]
        return []

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
            }
