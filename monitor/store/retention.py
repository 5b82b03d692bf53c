"""Retention: delete articles older than `retention.articles`, keep the history aggregates and the alerts.

An article is purged when both its `happened_at` and its `collected_at` are older than the cutoff (an old
article just collected is kept for a while, so a feed that still lists it does not bring it back every pass).
The cutoff is aligned down to the 15-minute rollup cell, so purged periods are whole cells in `topic_rollup`,
which keeps their totals (see `monitor.store.history.retire_articles`). Alerts, alert events and the
notification outbox are never touched. Deletes run in small batches, each its own transaction, so a long
purge never holds SQLite's write lock for long and a crash loses nothing but the remaining work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.config import Settings
from monitor.store.history import cell_start, retire_articles
from monitor.store.tables import Article, ArticleScore
from monitor.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

_A = Article.__table__
_S = ArticleScore.__table__
BATCH_SIZE = 500


@dataclass(frozen=True)
class RetentionReport:
    cutoff: datetime | None  # None: retention is off (`retention.articles: null`)
    articles: int = 0
    topic_rows: int = 0
    batches: int = 0
    duration: float = 0.0


def cutoff_for(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Articles older than this are purged (aligned to the rollup cell); None when retention is off."""
    if settings.retention.articles is None:
        return None
    return cell_start(as_utc(now or utcnow()) - settings.retention.articles)


def purge_articles(engine: Engine, cutoff: datetime, *, batch_size: int = BATCH_SIZE) -> RetentionReport:
    """Delete articles (with their scores and topic rows) older than `cutoff`, batch by batch."""
    cutoff = as_utc(cutoff)
    started = time.monotonic()
    articles = topic_rows = batches = 0
    while True:
        with engine.begin() as connection:
            ids = list(
                connection.execute(
                    sa.select(_A.c.id)
                    .where(_A.c.happened_at < cutoff, _A.c.collected_at < cutoff)
                    .order_by(_A.c.id)
                    .limit(batch_size)
                ).scalars()
            )
            if not ids:
                break
            topic_rows += retire_articles(connection, ids)
            connection.execute(sa.delete(_S).where(_S.c.article_id.in_(ids)))
            articles += connection.execute(sa.delete(_A).where(_A.c.id.in_(ids))).rowcount or 0
            batches += 1
        if len(ids) < batch_size:
            break
    return RetentionReport(
        cutoff=cutoff,
        articles=articles,
        topic_rows=topic_rows,
        batches=batches,
        duration=time.monotonic() - started,
    )


def run_retention(engine: Engine, settings: Settings, now: datetime | None = None) -> RetentionReport:
    """The scheduled retention job (leader only): purge per `settings.retention`."""
    cutoff = cutoff_for(settings, now)
    if cutoff is None:
        return RetentionReport(cutoff=None)
    report = purge_articles(engine, cutoff)
    log.info(
        "retention: purged %d articles older than %s",
        report.articles,
        cutoff.isoformat(),
        extra={
            "articles": report.articles,
            "topic_rows": report.topic_rows,
            "cutoff": cutoff.isoformat(),
            "duration_s": round(report.duration, 3),
        },
    )
    return report


def oldest_retained(engine: Engine) -> datetime | None:
    """The oldest article still stored (its happened_at): before it, history comes from the rollup alone."""
    with engine.connect() as connection:
        value = connection.execute(sa.select(sa.func.min(_A.c.happened_at))).scalar()
    return as_utc(value) if value is not None else None
