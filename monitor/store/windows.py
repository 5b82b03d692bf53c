"""Window queries the alert rules read: per-topic statistics over a time window, and its headlines.

A window is half-open on the left: `start < happened_at <= end`. An article therefore counts from the
moment it happened until exactly `window` later, identically here and in the in-memory replay
(`monitor.alerts.replay`), so replayed history and live evaluation agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session

from monitor.store.tables import Article, ArticleTopic, Feed

NEGATIVE = "negative"
POSITIVE = "positive"

HeadlineOrder = Literal["most_negative", "most_positive", "recent"]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Counts and mean of the topic-specific sentiment of the articles in one window."""

    count: int
    sentiment_sum: float
    negative: int
    positive: int

    @property
    def mean(self) -> float | None:
        return self.sentiment_sum / self.count if self.count else None

    @property
    def neg_share(self) -> float | None:
        return self.negative / self.count if self.count else None

    @property
    def pos_share(self) -> float | None:
        return self.positive / self.count if self.count else None


EMPTY = WindowStats(0, 0.0, 0, 0)


@dataclass(frozen=True, slots=True)
class Headline:
    article_id: int
    title: str
    url: str | None
    source: str | None
    sentiment: float
    label: str
    happened_at: datetime


def topic_window_stats(session: Session, topic: str, start: datetime, end: datetime) -> WindowStats:
    """Statistics of `topic` over `start < happened_at <= end` (one indexed range scan)."""
    t = ArticleTopic.__table__.c
    query = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(t.sentiment), 0.0),
        sa.func.coalesce(sa.func.sum(sa.case((t.label == NEGATIVE, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((t.label == POSITIVE, 1), else_=0)), 0),
    ).where(t.topic == topic, t.happened_at > start, t.happened_at <= end)
    count, total, negative, positive = session.execute(query).one()
    return WindowStats(int(count), float(total), int(negative), int(positive))


def top_articles(
    session: Session, topic: str, start: datetime, end: datetime, order: HeadlineOrder, limit: int = 5
) -> list[Headline]:
    """The articles that contributed most to a window: most negative, most positive or most recent."""
    topics, articles, feeds = ArticleTopic.__table__, Article.__table__, Feed.__table__
    t, a, f = topics.c, articles.c, feeds.c
    ordering = {
        "most_negative": (t.sentiment.asc(), t.happened_at.desc()),
        "most_positive": (t.sentiment.desc(), t.happened_at.desc()),
        "recent": (t.happened_at.desc(), t.sentiment.asc()),
    }[order]
    query = (
        sa.select(
            a.id, a.title, a.url, sa.func.coalesce(a.source, f.name), t.sentiment, t.label, t.happened_at
        )
        .select_from(topics.join(articles, a.id == t.article_id).join(feeds, f.id == a.feed_id))
        .where(t.topic == topic, t.happened_at > start, t.happened_at <= end)
        .order_by(*ordering, a.id.desc())
        .limit(limit)
    )
    return [
        Headline(int(row[0]), row[1] or "", row[2], row[3], float(row[4]), row[5], row[6])
        for row in session.execute(query)
    ]


def topic_series(
    session: Session, topic: str, start: datetime, end: datetime
) -> list[tuple[datetime, float, str]]:
    """(happened_at, sentiment, label) of every article of `topic` in the range, oldest first (for replay)."""
    t = ArticleTopic.__table__.c
    query = (
        sa.select(t.happened_at, t.sentiment, t.label)
        .where(t.topic == topic, t.happened_at > start, t.happened_at <= end)
        .order_by(t.happened_at)
    )
    return [(row[0], float(row[1]), row[2]) for row in session.execute(query)]
