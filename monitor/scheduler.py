"""The long-running schedule of `monitor run` (APScheduler 3.x BackgroundScheduler).

Jobs:
- `feed:<name>`  one per enabled feed, every `feed.every` with jitter: pipeline.process_feed (collect ->
                 score -> evaluate). A failing feed is skipped while `feeds.next_poll_at` says it backs off.
- `evaluate`     rule evaluation every `settings.evaluate_every` (also closes windows when no news arrives).
- `deliver`      outbox delivery every `settings.notify.deliver_every`.
- `retention`    article retention every `settings.retention.every` (when retention is configured).
- `recover`      once at start and after a takeover: scores *all* articles a killed run stored but never
                 scored, at full speed, page by page. Until it is done, feed polls and rule evaluation
                 are skipped (rules must not fire on a partial picture); then both are made due at once.
- `score-missing` stragglers (stored but unscored, 5 minutes old), every 10 min after start.
- `heartbeat`    every 30 s: proves to /healthz that the scheduler still runs jobs.
- `digest`       every 30 s when `digest:` is configured: queues the period's digest once it is due
                 (monitor/digest; the claim in the database makes it once per period across replicas
                 and restarts), then makes `deliver` due at once. Held while `recover` runs.
- `database-check` every 15 s on every replica: upgrades a schema dropped under the process, fails while
                 writes cannot start (a locked SQLite file, a read-only PostgreSQL).

Each system job's outcome goes to the RuntimeStatus: /readyz reports a job whose latest run failed.

Leader election: every job except the heartbeat first asks `is_leader()` and returns at once when this
replica is a standby. `on_leadership(True)` recovers, then makes feed jobs due soon after a takeover.

Shared polling (PostgreSQL, or a broker configured): instead of one job per feed on the leader, every replica
runs a `claim` job (every `queue.claim_every`) that claims due feeds from the database
(`monitor.store.feeds.claim_due_feeds`, `FOR UPDATE SKIP LOCKED`): two or ten replicas never poll a feed
twice and none stands idle. In process, a replica claims only as many feeds as it has free poll threads;
with a broker (`dispatch` given) it enqueues each claimed poll for `monitor worker`. Leader election then
only guards the singleton jobs: evaluation, delivery, retention, recovery and stragglers. SQLite without a
broker keeps the per-feed jobs above (one process).

Executors: feed jobs get their own thread pool with a worker per feed, so one feed hanging until its
total deadline never delays another feed; rule evaluation, delivery and the heartbeat run in a separate
small pool, so a burst of slow feeds can never starve them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from monitor import metrics
from monitor.config import FeedConfig, Settings
from monitor.ops import check_database
from monitor.status import RuntimeStatus
from monitor.store import feeds as feed_store
from monitor.store.db import DatabaseError, error_reason
from monitor.timeutil import utcnow

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=30)
DIGEST_CHECK_EVERY = timedelta(seconds=30)
DATABASE_CHECK_EVERY = timedelta(seconds=15)
MAX_FEED_WORKERS = 64
MAX_CLAIMS_PER_RUN = 1000  # feeds enqueued per claim run with a broker


def _seconds(delta: timedelta) -> float:
    return max(0.001, delta.total_seconds())


class MonitorScheduler:
    """One APScheduler job per feed plus the periodic system jobs; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        pipeline,  # noqa: ANN001 - monitor.pipeline.Pipeline (or anything with the same methods)
        *,
        status: RuntimeStatus | None = None,
        is_leader: Callable[[], bool] | None = None,
        dispatch=None,  # noqa: ANN001 - monitor.queue.Dispatcher: enqueue polls for workers instead
        shared: bool | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.pipeline = pipeline
        self.status = status
        self.is_leader: Callable[[], bool] = is_leader or (lambda: True)
        self.feeds: dict[str, FeedConfig] = {feed.name: feed for feed in settings.feeds if feed.enabled}
        self.dispatch = dispatch
        # Feeds claimed from the database by every replica (see the module docstring), or one job per feed.
        self.shared = (
            (engine.dialect.name == "postgresql" or dispatch is not None) if shared is None else shared
        )
        self._polling: set[str] = set()  # claimed feeds this replica is polling in process right now
        self.recovering = threading.Event()  # set from start (or a takeover) until the backlog is scored
        self._held: set[str] = set()  # feeds whose poll was skipped while recovering: due once it is done
        self._held_lock = threading.Lock()
        self._stopping = threading.Event()
        feed_workers = min(MAX_FEED_WORKERS, max(2, len(self.feeds) + 1))
        self.feed_workers = feed_workers
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "feeds": ThreadPoolExecutor(max_workers=feed_workers),
                "system": ThreadPoolExecutor(max_workers=5),
            },
            job_defaults={
                # coalesce: after a pause (suspend, busy pool) run a missed job once, not once per missed
                # slot: polling a feed or evaluating rules twice back to back gains nothing.
                "coalesce": True,
                # max_instances=1: a poll still waiting on a slow server must not overlap the next poll of
                # the same feed (both would race on its validators); evaluation and delivery likewise.
                "max_instances": 1,
            },
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        now = utcnow()
        if self.shared:
            feed_store.ensure_feeds(self.engine, [(f.name, f.url) for f in self.feeds.values()], now)
            self.add_periodic(
                "claim", self._claim, self.settings.queue.claim_every, leader_only=False, first_delay=0.5
            )
        else:
            states = {state.name: state for state in feed_store.list_feeds(self.engine)}
            for name, feed in self.feeds.items():
                self._add_feed_job(feed, self._first_run(feed, states.get(name), now))
        self.add_periodic("evaluate", self._evaluate, self.settings.evaluate_every)
        self.add_periodic("deliver", self._deliver, self.settings.notify.deliver_every)
        # Stragglers only: the backlog a killed run left is scored by `recover`, before anything else.
        # Recent ones are left to the feed job that is scoring them right now.
        # With workers, a poll worker killed between storing and enqueueing leaves articles unscored: look
        # for them every minute (they are enqueued, not scored here).
        straggler_every = timedelta(minutes=1) if self.dispatch is not None else timedelta(minutes=10)
        self.add_periodic("score-missing", self._score_missing, straggler_every)
        if self.dispatch is not None:
            self.add_periodic(
                "queue-depth", self._queue_depth, timedelta(seconds=15), leader_only=False, first_delay=0.0
            )
        if self.settings.retention.articles is not None:
            self.add_periodic("retention", self._retention, self.settings.retention.every, first_delay=60.0)
        if self.settings.digest is not None and self.settings.digest.enabled:
            self.add_periodic("digest", self._digest, DIGEST_CHECK_EVERY)
        self.add_periodic("heartbeat", self._heartbeat, HEARTBEAT_EVERY, leader_only=False, first_delay=0.0)
        self.add_periodic("database-check", self._check_database, DATABASE_CHECK_EVERY, leader_only=False)
        self._schedule_recovery()
        self.scheduler.start()
        if self.status is not None:
            self.status.mark_scheduler(True)
        log.info(
            "scheduler started", extra={"feeds": len(self.feeds), "jobs": len(self.scheduler.get_jobs())}
        )

    def shutdown(self) -> None:
        """Stop scheduling at once; jobs already running finish (or are cancelled by the caller)."""
        self._stopping.set()  # a recovery in progress ends after its current page
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.status is not None:
            self.status.mark_scheduler(False)
        log.info("scheduler stopped")

    @property
    def running(self) -> bool:
        return self.scheduler.running

    # ------------------------------------------------------------------ jobs

    def add_periodic(
        self,
        job_id: str,
        func: Callable[[], object],
        every: timedelta,
        *,
        leader_only: bool = True,
        first_delay: float | None = None,
    ) -> None:
        """Add a system job (evaluation, delivery, retention, ...) running every `every`."""
        seconds = _seconds(every)

        def run() -> None:
            if leader_only and not self.is_leader():
                return
            try:
                func()
            except Exception as exc:  # noqa: BLE001 - log and keep the schedule; the next run retries
                log.exception("scheduled job failed", extra={"job": job_id})
                self._record(job_id, exc)
            else:
                self._record(job_id, None)

        delay = seconds if first_delay is None else first_delay
        self.scheduler.add_job(
            run,
            IntervalTrigger(seconds=seconds, timezone=UTC),
            id=job_id,
            name=job_id,
            executor="system",
            # A run that could not start on time (pool busy, process paused) still runs within one
            # interval; APScheduler's default of 1 s would silently drop it.
            misfire_grace_time=max(1, int(seconds)),
            next_run_time=utcnow() + timedelta(seconds=delay),
            replace_existing=True,
        )

    def _add_feed_job(self, feed: FeedConfig, first_run: datetime) -> None:
        every = _seconds(feed.every)
        jitter = min(_seconds(self.settings.collect.jitter), every / 2)
        self.scheduler.add_job(
            self.run_feed,
            IntervalTrigger(seconds=every, jitter=int(jitter) or None, timezone=UTC),
            args=[feed.name],
            id=f"feed:{feed.name}",
            name=f"feed:{feed.name}",
            executor="feeds",
            # Late by up to one interval: still worth polling (the next slot is that far away).
            misfire_grace_time=max(1, int(every)),
            next_run_time=first_run,
            replace_existing=True,
        )

    def _first_run(self, feed: FeedConfig, state: feed_store.FeedState | None, now: datetime) -> datetime:
        """Soon (spread over the jitter so all feeds do not fire at once), but not before a stored
        next poll (a restart resumes the feed's rhythm and its backoff), and never later than one interval."""
        stagger = timedelta(seconds=random.uniform(0, min(_seconds(self.settings.collect.jitter), 10.0)))
        first = now + stagger
        if state is not None and state.next_poll_at is not None:
            first = max(first, min(state.next_poll_at, now + feed.every))
        return first

    def run_feed(self, name: str) -> None:
        """One scheduled poll of one feed (leader only; skipped while the feed backs off)."""
        if not self.is_leader():
            return
        feed = self.feeds.get(name)
        if feed is None:
            return
        with self._held_lock:
            if self.recovering.is_set():  # `recover` makes this poll due again once the backlog is scored
                self._held.add(name)
                log.debug("poll held until the unscored backlog is scored", extra={"feed": name})
                return
        try:
            state = feed_store.get_feed(self.engine, name)
            now = utcnow()
            tolerance = min(timedelta(seconds=_seconds(self.settings.collect.jitter) + 5), feed.every / 2)
            if state is not None and state.in_backoff(now, tolerance):
                log.debug(
                    "feed backing off; poll skipped",
                    extra={"feed": name, "next_poll_at": state.next_poll_at.isoformat()},
                )
                metrics.record_poll(name, "backoff")
                return
            self.pipeline.process_feed(feed)
        except Exception:  # noqa: BLE001 - the feed's own failures are results; this is a bug or a DB outage
            log.exception("feed job failed", extra={"feed": name})

    # ------------------------------------------------------------------ shared polling (claims)

    def _claim(self) -> None:
        """Claim due feeds from the database; poll them here (free threads only) or enqueue them."""
        if self.recovering.is_set() or self._stopping.is_set():
            return
        if self.dispatch is not None:
            limit = MAX_CLAIMS_PER_RUN
        else:
            with self._held_lock:
                limit = self.feed_workers - len(self._polling)
        leases = {name: feed.every for name, feed in self.feeds.items()}
        claimed = feed_store.claim_due_feeds(self.engine, leases, utcnow(), limit)
        for name, claimed_at in claimed:
            if self.dispatch is not None:
                self.dispatch.poll(name, claimed_at)
                continue
            with self._held_lock:
                self._polling.add(name)
            self.scheduler.add_job(
                self._poll_claimed,
                args=[name],
                id=f"poll:{name}",
                name=f"poll:{name}",
                executor="feeds",
                misfire_grace_time=None,
                replace_existing=True,
            )
        if claimed:
            log.debug("feeds claimed", extra={"feeds": len(claimed), "queued": self.dispatch is not None})

    def _poll_claimed(self, name: str) -> None:
        try:
            feed = self.feeds.get(name)
            if feed is not None and not self._stopping.is_set():
                self.pipeline.process_feed(feed)
        except Exception:  # noqa: BLE001 - the feed's own failures are results; this is a bug or a DB outage
            log.exception("feed job failed", extra={"feed": name})
        finally:
            with self._held_lock:
                self._polling.discard(name)

    def _queue_depth(self) -> None:
        """Queue depths into /metrics; the outcome is the broker's health on /readyz."""
        try:
            self.dispatch.observe_depth()
        except Exception as exc:
            if self.status is not None:
                self.status.set_broker(error_reason(exc) or type(exc).__name__)
            raise
        if self.status is not None:
            self.status.set_broker(None)

    def _record(self, job_id: str, error: Exception | None) -> None:
        if self.status is None:
            return
        if error is None:
            self.status.record_job(job_id, None)
            return
        from_database = isinstance(error, sa.exc.DBAPIError | DatabaseError)
        self.status.record_job(job_id, error_reason(error), database=from_database)

    def _check_database(self) -> None:
        """Schema at head (upgraded again when it went missing) and writes possible; see monitor.ops."""
        started = utcnow()
        check_database(self.engine)
        if self.status is not None:
            self.status.database_recovered(since=started)

    def _evaluate(self) -> None:
        if self.recovering.is_set():  # rules on a partly scored window would fire on a partial picture
            return
        self.pipeline.evaluate()

    def _deliver(self) -> None:
        self.pipeline.deliver()

    def _score_missing(self) -> None:
        if self.recovering.is_set():  # `recover` is scoring them all right now
            return
        if self.dispatch is not None:
            self.dispatch.score_missing(self.engine, min_age=timedelta(minutes=2))
            return
        self.pipeline.score_missing(min_age=timedelta(minutes=5))

    def _retention(self) -> None:
        from monitor.store.retention import run_retention

        run_retention(self.engine, self.settings)

    def _digest(self) -> None:
        if self.recovering.is_set():  # a digest of a partly scored period would misstate it
            return
        from monitor.digest import DigestSender

        if DigestSender(self.settings, self.engine).send_due() is not None:
            job = self.scheduler.get_job("deliver")
            if job is not None:
                job.modify(next_run_time=utcnow())

    def _heartbeat(self) -> None:
        if self.status is not None:
            self.status.heartbeat()

    # ------------------------------------------------------------------ crash recovery

    def _schedule_recovery(self, *, takeover: bool = False) -> None:
        """Hold feed polls and rules, and run `recover` now (at start and on a takeover). On a takeover
        every feed is made due afterwards: a standby's polls were not held, they were simply skipped."""
        with self._held_lock:
            self.recovering.set()
            if takeover:
                self._held = set(self.feeds)
        self.scheduler.add_job(
            self._recover,
            id="recover",
            name="recover",
            executor="system",
            next_run_time=utcnow(),
            misfire_grace_time=None,  # however late it starts, it must run: polls and rules wait for it
            replace_existing=True,
        )

    def _recover(self) -> None:
        """Score the whole unscored backlog a killed run left, then let feed polls and rules go.

        A standby does nothing (the leader recovers; `on_leadership` schedules this again on a takeover).
        A failure is logged and does not hold the monitor: the `score-missing` job retries the rest."""
        if not self.is_leader():
            if self.shared:  # the leader scores the backlog; this replica's claims need not wait for it
                with self._held_lock:
                    self.recovering.clear()
            return
        try:
            if self.dispatch is not None:  # workers score it; rules wait until the queue has it
                self.dispatch.score_missing(self.engine, min_age=None)
            else:
                self.pipeline.score_missing(limit=None, stop=self._stop_recovery)
        except Exception:  # noqa: BLE001 - never hold polls and rules forever
            log.exception("scoring the unscored backlog failed; score-missing retries it every 10 minutes")
        if self._stop_recovery():
            return  # shutting down, or another replica leads now and recovers itself
        with self._held_lock:
            self.recovering.clear()
            held, self._held = self._held, set()
        self._make_due(held, utcnow())

    def _stop_recovery(self) -> bool:
        return self._stopping.is_set() or not self.is_leader()

    def _make_due(self, feeds: set[str], now: datetime) -> None:
        """The held feed polls soon (respecting stored backoff and rhythm), rules at once."""
        states = {state.name: state for state in feed_store.list_feeds(self.engine)}
        for name in sorted(feeds & set(self.feeds)):
            job = self.scheduler.get_job(f"feed:{name}")
            if job is not None:
                job.modify(next_run_time=self._first_run(self.feeds[name], states.get(name), now))
        job = self.scheduler.get_job("evaluate")
        if job is not None:
            job.modify(next_run_time=now)

    # ------------------------------------------------------------------ leader election

    def on_leadership(self, leader: bool) -> None:
        """Called when this replica becomes (or stops being) the leader. On a takeover the backlog the old
        leader left unscored is scored first; then feed jobs are made due soon (respecting stored backoff)
        instead of waiting out a whole interval, and rules are evaluated."""
        if not leader or not self.scheduler.running:
            return
        self._schedule_recovery(takeover=True)
        job = self.scheduler.get_job("deliver")
        if job is not None:
            job.modify(next_run_time=utcnow() + timedelta(seconds=1))
        log.info(
            "leadership gained: recovering, then feed jobs rescheduled", extra={"feeds": len(self.feeds)}
        )

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self.scheduler.get_jobs())
