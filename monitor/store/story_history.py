"""Per-topic history counted in stories: `monitor history --count stories`, `/api/history?count=stories`.

Counting articles lets a wire story syndicated to twenty sites weigh twenty times as much as an exclusive;
counting stories gives each event one vote. A story counts once, in the bucket of its `first_seen`, with its
per-topic vote from `story_topics` (mean sentiment of its articles toward the topic, majority label).

Each point also carries `coverage_share`: the topic's stories divided by every story with any topic in that
bucket. For `ai_bubble` that is the *AI-bubble index*, the share of AI-chip coverage that is bubble talk.

This reads `story_topics` directly: stories are far fewer than articles, and the article rollup of
`monitor.store.history` (15-minute cells of article counts) cannot count an event once.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from monitor.store.history import HistoryError, bucket_grid, time_zone
from monitor.store.tables import StoryTopic
from monitor.timeutil import as_utc

_V = StoryTopic.__table__

COUNTS = ("articles", "stories")


@dataclass(frozen=True, slots=True)
class StoryHistoryPoint:
    topic: str
    bucket_start: datetime  # aware; in the requested time zone
    stories: int  # stories about the topic first seen in the bucket
    articles: int  # the articles (copies included) those stories gathered about the topic
    mean_sentiment: float | None  # mean of the stories' votes
    negative_share: float | None  # share of the stories whose vote is negative
    positive_share: float | None
    all_stories: int  # stories with any topic first seen in the bucket
    coverage_share: float | None  # stories / all_stories

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket_start": self.bucket_start.isoformat().replace("+00:00", "Z"),
            "stories": self.stories,
            "articles": self.articles,
            "mean_sentiment": self.mean_sentiment,
            "negative_share": self.negative_share,
            "positive_share": self.positive_share,
            "all_stories": self.all_stories,
            "coverage_share": self.coverage_share,
            "topic": self.topic,
        }


@dataclass(slots=True)
class _Cell:
    """Running totals of one (topic, bucket)."""

    stories: int = 0
    articles: int = 0
    sentiment: float = 0.0
    negative: int = 0
    positive: int = 0


def story_history(
    engine: Engine | Connection,
    topics: Sequence[str],
    since: datetime,
    until: datetime,
    bucket: str = "1h",
    tz: str = "UTC",
    max_points: int | None = None,
) -> list[StoryHistoryPoint]:
    """Per topic and bucket over [since, until), counting stories; same grid and errors as `history`.

    Topics come back in the given order, buckets in time order, empty buckets with 0 stories and None means.
    """
    zone = time_zone(tz)
    since, until = as_utc(since), as_utc(until)
    if until <= since:
        raise HistoryError("until", "until must be after since")
    topics = list(dict.fromkeys(topics))
    starts = bucket_grid(since, until, bucket, zone, len(topics), max_points)
    cells = {topic: [_Cell() for _ in starts] for topic in topics}
    totals = [0] * len(starts)
    if topics and starts:
        if isinstance(engine, Connection):
            _accumulate(engine, topics, since, until, starts, cells, totals)
        else:
            with engine.connect() as connection:
                _accumulate(connection, topics, since, until, starts, cells, totals)
    return [
        _point(topic, start.astimezone(zone), cell, total)
        for topic in topics
        for start, cell, total in zip(starts, cells[topic], totals, strict=True)
    ]


def _accumulate(
    connection: Connection,
    topics: list[str],
    since: datetime,
    until: datetime,
    starts: list[datetime],
    cells: dict[str, list[_Cell]],
    totals: list[int],
) -> None:
    stamps = [s.timestamp() for s in starts]

    def index(at: datetime) -> int:
        return bisect.bisect_right(stamps, as_utc(at).timestamp()) - 1

    in_range = sa.and_(_V.c.first_seen >= since, _V.c.first_seen < until)
    votes = connection.execute(
        sa.select(_V.c.topic, _V.c.first_seen, _V.c.articles, _V.c.sentiment, _V.c.label).where(
            _V.c.topic.in_(topics), in_range
        )
    )
    for topic, first_seen, articles, sentiment, label in votes:
        cell = cells[topic][index(first_seen)]
        cell.stories += 1
        cell.articles += int(articles)
        cell.sentiment += float(sentiment)
        cell.negative += label == "negative"
        cell.positive += label == "positive"
    # The denominator of coverage_share: every story with any topic, whatever topics were asked for.
    any_topic = connection.execute(
        sa.select(_V.c.story_id, sa.func.min(_V.c.first_seen)).where(in_range).group_by(_V.c.story_id)
    )
    for _story_id, first_seen in any_topic:
        totals[index(first_seen)] += 1


def _point(topic: str, start: datetime, cell: _Cell, total: int) -> StoryHistoryPoint:
    n = cell.stories
    return StoryHistoryPoint(
        topic=topic,
        bucket_start=start,
        stories=n,
        articles=cell.articles,
        mean_sentiment=cell.sentiment / n if n else None,
        negative_share=cell.negative / n if n else None,
        positive_share=cell.positive / n if n else None,
        all_stories=total,
        coverage_share=n / total if total else None,
    )
