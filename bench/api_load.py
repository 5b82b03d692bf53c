"""Heavy `/api/sentiment` queries in parallel while the scheduler keeps evaluating the rules.

    python bench/api_load.py                                  # SQLite, 200,000 articles over 208 days
    python bench/api_load.py --db postgresql --parallel 8 --seconds 30
    python bench/api_load.py --uncapped --query probed        # as before issue 11: the probe's 13 MB requests
    python bench/api_load.py --articles 20000 --seconds 8     # a quick look

One process, laid out as `monitor run` lays it out: the HTTP server (uvicorn, in a thread) and the
APScheduler scheduler (`MonitorScheduler`, real rules over the loaded data, the compact English model
resident), on one database. First one request for what the probe asked for (208 days at 15 minutes, four
topics: 13 MB before the cap, now 422), then two phases of `--seconds` each: idle, and `--parallel` clients
that each send `--query` back to back: `allowed` (default) the heaviest history the API allows (all four
topics, 90 days hourly: 8,640 points), or `probed` the probe's request.

Printed: request latency (p50 / p95 / max) and status counts, and for the `evaluate` job (every
`--evaluate-every` s) how many runs the phase should have had, how many ran, were skipped (misfired or
still running) and how late the latest one finished after its scheduled time. "on time" means no run was
skipped and none finished later than one interval after its slot.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.query import PG_DEFAULT, TOPICS, load, serve  # noqa: E402
from monitor.config import ModelConfig, Settings  # noqa: E402
from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402

HEAVY = {"since": "90d", "bucket": "1h"}  # every topic: 4 x 2,160 = 8,640 points, under the cap
PROBED = {"since": "208d", "bucket": "15m"}  # the probe's request: 79,876 points


@dataclass
class Evaluations:
    """What APScheduler reports about the `evaluate` job."""

    every: float
    ran: int = 0
    skipped: int = 0
    late: list[float] = field(default_factory=list)  # seconds from the scheduled time to the end of the run
    lock: threading.Lock = field(default_factory=threading.Lock)

    def listen(self, event) -> None:  # noqa: ANN001 - an APScheduler event
        from apscheduler.events import EVENT_JOB_EXECUTED

        if getattr(event, "job_id", None) != "evaluate":
            return
        with self.lock:
            if event.code == EVENT_JOB_EXECUTED:
                self.ran += 1
                self.late.append((datetime.now(UTC) - event.scheduled_run_time).total_seconds())
            else:  # missed (past the misfire grace) or max_instances (the previous run still going)
                self.skipped += 1

    def reset(self) -> None:
        with self.lock:
            self.ran, self.skipped, self.late = 0, 0, []

    def summary(self, seconds: float) -> str:
        with self.lock:
            expected = int(seconds / self.every)
            worst = max(self.late, default=0.0)
            on_time = self.skipped == 0 and worst <= self.every and self.ran >= expected - 1
            return (
                f"evaluate: {self.ran} ran of ~{expected} due, {self.skipped} skipped, "
                f"latest finish {worst:.2f} s after its slot -> {'on time' if on_time else 'LATE'}"
            )


def settings_for(url: str, args: argparse.Namespace) -> Settings:
    rules = [
        {"name": f"{topic}-drop", "topic": topic, "metric": "mean_sentiment", "window": "6h", "below": -0.3}
        for topic in TOPICS
    ] + [
        {
            "name": "bubble-talk",
            "topic": "ai_bubble",
            "metric": "negative_share",
            "window": "24h",
            "above": 0.6,
        }
    ]
    return Settings.model_validate(
        {
            "database_url": url,
            "topics": {t: {"keywords": [t.replace("_", " ")]} for t in TOPICS},
            "alerts": rules,
            "evaluate_every": f"{args.evaluate_every}s",
            "http": {"max_concurrent_queries": args.slots},
            "retention": {"articles": None},
            "model": {"sentiment": "compact-en", "multilingual": None, "threads": 1},
        }
    )


def start_scheduler(settings: Settings, engine: sa.engine.Engine, evaluations: Evaluations):  # noqa: ANN201
    from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

    from monitor.classify import Classifier
    from monitor.pipeline import Pipeline
    from monitor.scheduler import MonitorScheduler
    from monitor.status import RuntimeStatus

    classifier = Classifier.from_config(ModelConfig(sentiment="compact-en", threads=1), settings.topics)
    pipeline = Pipeline(settings, engine, classifier=classifier)
    scheduler = MonitorScheduler(settings, engine, pipeline, status=RuntimeStatus(scheduler_expected=True))
    scheduler.scheduler.add_listener(
        evaluations.listen, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
    )
    scheduler.start()
    return scheduler


def hammer(base: str, parallel: int, seconds: float, params: dict) -> tuple[list[float], Counter, int]:
    """`parallel` clients sending `params` back to back for `seconds`: latencies (ms), statuses, bytes."""
    import httpx

    latencies: list[float] = []
    statuses: Counter = Counter()
    size = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = http.get("/api/sentiment", params=params)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] += 1
                    size[0] = max(size[0], len(response.content))

    threads = [threading.Thread(target=client) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, size[0]


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "no requests"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return f"p50 {statistics.median(ordered):7.0f} ms  p95 {p95:7.0f} ms  max {ordered[-1]:7.0f} ms"


def uncap() -> None:
    """Reproduce the behaviour before issue 11: no points cap (the gate's slots come from --slots)."""
    from monitor.api import routes

    routes.MAX_POINTS = 10**9


def run(name: str, url: str, args: argparse.Namespace) -> None:
    import httpx

    engine = create_db_engine(url)
    upgrade(engine)
    end = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    rows = load(engine, args.articles, end, args.days)
    seconds = time.perf_counter() - started
    print(f"[{name}] loaded {args.articles:,} articles ({rows:,} topic rows) in {seconds:.0f} s", flush=True)
    settings = settings_for(url, args)
    evaluations = Evaluations(every=args.evaluate_every)
    scheduler = start_scheduler(settings, engine, evaluations)
    base, stop = serve(settings, engine)
    try:
        time.sleep(args.evaluate_every * 2)  # first runs, model warm
        evaluations.reset()
        time.sleep(args.seconds)
        print(f"[{name}] idle, {args.seconds:.0f} s: {evaluations.summary(args.seconds)}", flush=True)
        started = time.perf_counter()
        probe = httpx.get(f"{base}/api/sentiment", params=PROBED, timeout=120)
        print(
            f"[{name}] the probe's request (208d/15m, 4 topics): {probe.status_code} in "
            f"{(time.perf_counter() - started) * 1000:.0f} ms, {len(probe.content):,} bytes",
            flush=True,
        )
        evaluations.reset()
        params = HEAVY if args.query == "allowed" else PROBED
        started = time.monotonic()
        latencies, statuses, size = hammer(base, args.parallel, args.seconds, params)
        elapsed = time.monotonic() - started  # the last requests may end well after --seconds
        print(
            f"[{name}] {args.parallel} parallel x {params['since']}/{params['bucket']} (4 topics, "
            f"{size:,} bytes), {args.seconds:.0f} s, "
            f"slots {args.slots}: {percentiles(latencies)}; statuses {dict(statuses)}"
        )
        print(f"[{name}] under load, {elapsed:.0f} s: {evaluations.summary(elapsed)}")
    finally:
        stop()
        scheduler.shutdown()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=208)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--evaluate-every", type=float, default=2.0)
    parser.add_argument("--slots", type=int, default=None, help="http.max_concurrent_queries (default 2)")
    parser.add_argument("--query", choices=["allowed", "probed"], default="allowed")
    parser.add_argument(
        "--uncapped", action="store_true", help="no points cap and 64 slots (before issue 11)"
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT, help="server URL used to create the bench database")
    args = parser.parse_args()
    if args.uncapped:
        uncap()
        args.slots = args.slots or 64
    args.slots = args.slots or Settings().http.max_concurrent_queries
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="monitor-api-load-") as folder:
            run("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}", args)
        return
    admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    name = f"monitor_api_load_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        run(
            "postgresql",
            sa.engine.make_url(args.pg_url).set(database=name).render_as_string(hide_password=False),
            args,
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
