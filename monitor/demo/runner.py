"""`monitor demo`: the whole pipeline on recorded feeds, offline, into a fresh database.

1. Serve the recorded feeds (English and Chinese, a few days of news) from 127.0.0.1.
2. Collect, score (the real model) and store them through the ordinary pipeline.
3. Evaluate the alert rules every 15 minutes across those days, as the scheduler would have, so the
   alert history has its episodes; deliver the notifications (console unless Slack is configured).
4. Print what happened and serve the dashboard.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.config import Settings, load_yaml
from monitor.demo.server import DemoFeedServer
from monitor.store import alerts as alert_store
from monitor.store.db import DatabaseError, create_db_engine
from monitor.store.migrate import upgrade
from monitor.store.tables import Article
from monitor.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"
STEP = timedelta(minutes=15)


def demo_settings(base_url: str, database_url: str, overrides: dict[str, Any] | None = None) -> Settings:
    """The demo configuration with its feeds pointed at the local server."""
    text = DEMO_CONFIG.read_text(encoding="utf-8").replace("{base}", base_url)
    data = load_yaml(text, DEMO_CONFIG)
    data["database_url"] = database_url
    for key, value in (overrides or {}).items():
        data[key] = value
    return Settings.model_validate(data)


@dataclass
class DemoReport:
    settings: Settings
    engine: Engine
    feeds: list = field(default_factory=list)  # FeedResult per feed
    scored: int = 0
    evaluations: int = 0
    episodes: list = field(default_factory=list)  # monitor.store.alerts.Episode
    delivered: int = 0
    seconds: float = 0.0


def _demo_owned(path: Path) -> bool:
    """True when `path` is absent, empty, or an SQLite database whose feeds are all demo feeds (127.0.0.1)."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return True
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            urls = [row[0] for row in conn.execute("SELECT url FROM feeds")]
    except sqlite3.Error:
        return False
    return all(url.startswith("http://127.0.0.1:") for url in urls)


def fresh_sqlite(path: Path) -> str:
    """Remove a previous demo database (and its WAL files) and return the new URL.

    Anything else at `path` (another file, the monitor's own database) is refused, never deleted.
    """
    if not _demo_owned(path):
        raise DatabaseError(
            f"{path} exists and is not a demo database; refusing to replace it (choose another --db)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    for suffix in ("", "-wal", "-shm", ".leader"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def run_demo(
    database_url: str,
    *,
    server: DemoFeedServer,
    classifier: Any = None,
    overrides: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> DemoReport:
    """Collect, score, replay the rules and deliver; the caller owns (and stops) the feed server."""
    from monitor.pipeline import Pipeline

    started = time.monotonic()
    settings = demo_settings(server.base_url, database_url, overrides)
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    pipeline = Pipeline(settings, engine, classifier=classifier)
    report = DemoReport(settings=settings, engine=engine)

    report.feeds = pipeline.collector.collect_many(settings.feeds)
    events = [event for result in report.feeds for event in result.events]
    report.scored = len(pipeline.score(events))

    # Walk the rules through the recorded days on the scheduler's 15-minute beat.
    now = as_utc(now) if now else utcnow()
    with engine.connect() as connection:
        first = connection.execute(sa.select(sa.func.min(Article.__table__.c.happened_at))).scalar()
    at = _ceil(as_utc(first), STEP) if first is not None else now
    while at < now:
        pipeline.evaluate(now=at)
        report.evaluations += 1
        at += STEP
    pipeline.evaluate(now=now)
    report.evaluations += 1
    delivery = pipeline.deliver(now=now)
    report.delivered = getattr(delivery, "delivered", 0)

    with Session(engine) as session:
        report.episodes = [e for e in alert_store.episodes(session) if e.fired_at is not None]
    report.seconds = time.monotonic() - started
    return report


def _ceil(value: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    stamp = value.timestamp()
    return datetime.fromtimestamp(-(-stamp // seconds) * seconds, value.tzinfo)
