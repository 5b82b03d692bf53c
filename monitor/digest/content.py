"""What a digest says, read from the database: per topic, the period against the one before it.

- **Volume and sentiment, counted in stories** (`story_topics`, by `first_seen`, as `monitor history --count
  stories` counts them): a wire story carried by twenty sites is one event, so a copy storm does not read as
  a surge. Each period is `[start, end)`.
- **The most important stories**: the period's stories about the topic carried by the most sources, with
  each story's sentiment toward every topic it is about.
- **Alerts** that fired or resolved in the period (`alert_events`), with the value they fired or resolved at.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from monitor.digest.schedule import Period
from monitor.store.stories import StoryFilter, first_links, list_stories
from monitor.store.tables import AlertEvent, StoryTopic
from monitor.timeutil import isoformat

_V = StoryTopic.__table__.c
_E = AlertEvent.__table__.c
ALERT_KINDS = ("fired", "resolved")


@dataclass(frozen=True, slots=True)
class Tally:
    """One topic over one period, in stories."""

    stories: int = 0
    articles: int = 0  # the copies those stories gathered about the topic
    mean_sentiment: float | None = None  # mean of the stories' votes
    negative_share: float | None = None  # share of stories whose vote is negative
    positive_share: float | None = None


@dataclass(frozen=True, slots=True)
class TopStory:
    id: int
    headline: str
    url: str | None
    first_seen: datetime
    sources: int
    articles: int
    sentiment: float  # toward the topic it is listed under
    label: str
    votes: tuple[tuple[str, float, str], ...]  # (topic, sentiment, label): this topic, then its others


@dataclass(frozen=True, slots=True)
class AlertNote:
    at: datetime
    kind: str  # fired | resolved
    rule: str
    topic: str
    metric: str | None
    value: float | None
    threshold: float | None
    reason: str | None  # resolved: cleared | no_articles | rule_removed


@dataclass(frozen=True, slots=True)
class TopicDigest:
    topic: str
    current: Tally
    previous: Tally
    top_stories: tuple[TopStory, ...]
    alerts: tuple[AlertNote, ...]


@dataclass(frozen=True, slots=True)
class DigestContent:
    name: str
    schedule: str | None  # daily | weekly; None for a digest asked for by hand (`--since`)
    timezone: str  # times are shown in it
    period: Period
    topics: tuple[TopicDigest, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (`monitor digest --format json`, and stored with the queued message)."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return isoformat(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        data = plain(asdict(self))
        for topic in data["topics"]:
            for story in topic["top_stories"]:
                story["votes"] = [{"topic": t, "sentiment": s, "label": lab} for t, s, lab in story["votes"]]
        return data


def build_digest(
    engine: Engine,
    *,
    name: str,
    topics: Sequence[str],
    period: Period,
    timezone: str = "UTC",
    schedule: str | None = None,
    top_stories: int = 3,
) -> DigestContent:
    """Read the digest of `period` for `topics` (in their order) in one connection."""
    topics = list(dict.fromkeys(topics))
    with engine.connect() as connection:
        current = _tallies(connection, topics, period.start, period.end)
        previous = _tallies(connection, topics, period.previous_start, period.start)
        alerts = _alerts(connection, topics, period)
        sections = tuple(
            TopicDigest(
                topic=topic,
                current=current.get(topic, Tally()),
                previous=previous.get(topic, Tally()),
                top_stories=_top_stories(connection, topic, period, top_stories) if top_stories else (),
                alerts=tuple(note for note in alerts if note.topic == topic),
            )
            for topic in topics
        )
    return DigestContent(name=name, schedule=schedule, timezone=timezone, period=period, topics=sections)


def _tallies(connection: Connection, topics: list[str], start: datetime, end: datetime) -> dict[str, Tally]:
    """Per topic: stories first seen in `[start, end)`, their articles, mean vote and label shares."""
    query = (
        sa.select(
            _V.topic,
            sa.func.count(),
            sa.func.sum(_V.articles),
            sa.func.sum(_V.sentiment),
            sa.func.sum(sa.case((_V.label == "negative", 1), else_=0)),
            sa.func.sum(sa.case((_V.label == "positive", 1), else_=0)),
        )
        .where(_V.topic.in_(topics), _V.first_seen >= start, _V.first_seen < end)
        .group_by(_V.topic)
    )
    return {
        topic: Tally(int(n), int(articles), float(total) / n, int(negative) / n, int(positive) / n)
        for topic, n, articles, total, negative, positive in connection.execute(query)
    }


def _top_stories(connection: Connection, topic: str, period: Period, limit: int) -> tuple[TopStory, ...]:
    """The period's stories about `topic` carried by the most sources (newest first among equals)."""
    flt = StoryFilter(topic=topic, since=period.start, until=period.end, limit=limit, order="sources")
    rows = list_stories(connection, flt)
    links = first_links(connection, [row.id for row in rows])
    stories = []
    for row in rows:
        vote = next(v for v in row.topics if v.topic == topic)
        stories.append(
            TopStory(
                id=row.id,
                headline=row.headline,
                url=links.get(row.id),
                first_seen=row.first_seen,
                sources=row.sources,
                articles=row.articles,
                sentiment=vote.sentiment,
                label=vote.label,
                # The listed topic first, then the story's other topics.
                votes=tuple(
                    (v.topic, v.sentiment, v.label)
                    for v in sorted(row.topics, key=lambda v: v.topic != topic)
                ),
            )
        )
    return tuple(stories)


def _alerts(connection: Connection, topics: list[str], period: Period) -> list[AlertNote]:
    """Alert events that fired or resolved in `[start, end)`, oldest first."""
    query = (
        sa.select(_E.at, _E.kind, _E.rule, _E.topic, _E.value, _E.threshold, _E.detail)
        .where(
            _E.kind.in_(ALERT_KINDS),
            _E.topic.in_(topics),
            _E.at >= period.start,
            _E.at < period.end,
        )
        .order_by(_E.at, _E.id)
    )
    notes = []
    for at, kind, rule, topic, value, threshold, detail in connection.execute(query):
        facts = _detail(detail)
        notes.append(
            AlertNote(
                at=at,
                kind=kind,
                rule=rule,
                topic=topic,
                metric=facts.get("metric"),
                value=value,
                threshold=threshold,
                reason=facts.get("reason") if kind == "resolved" else None,
            )
        )
    return notes


def _detail(text: str | None) -> dict[str, Any]:
    try:
        facts = json.loads(text) if text else {}
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}
