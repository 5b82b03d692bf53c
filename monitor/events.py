"""The small typed events that carry work from one stage to the next.

Stages never call each other directly; the pipeline (monitor/pipeline.py) hands each stage's
events to the next stage. Events carry identifiers and the data the next stage needs, not ORM rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ArticleCollected:
    """A new article, or a stored one whose title or text changed."""

    article_id: int
    feed: str
    title: str
    summary: str
    url: str | None
    language: str | None
    published_at: datetime | None
    is_update: bool = False


@dataclass(frozen=True, slots=True)
class TopicScore:
    name: str
    relevance: float
    sentiment: float


@dataclass(frozen=True, slots=True)
class ArticleScored:
    article_id: int
    label: str
    score: float
    confidence: float
    model: str
    topics: tuple[TopicScore, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class StoryAssigned:
    """An article placed in a story: a new one (`novel`) or one that already carried the event."""

    article_id: int
    story_id: int
    novel: bool
    basis: str  # first | text | meaning | kept (already placed: a rescore or an edit)
    similarity: float


@dataclass(frozen=True, slots=True)
class AlertFired:
    fingerprint: str
    rule: str
    topic: str
    value: float
    threshold: float
    at: datetime
    reminder: bool = False


@dataclass(frozen=True, slots=True)
class AlertResolved:
    fingerprint: str
    rule: str
    topic: str
    value: float | None
    at: datetime


# ----------------------------------------------------------------------------- on the wire (monitor/queue.py)

_WIRE_TYPES = {
    cls.__name__: cls for cls in (ArticleCollected, ArticleScored, StoryAssigned, AlertFired, AlertResolved)
}
_DATETIME_FIELDS = {"published_at", "at"}


def to_message(event: object) -> dict:
    """An event as a JSON-safe dict for a task-queue message: its type name and its fields (identifiers and
    the few values the next stage reads; datetimes as ISO 8601)."""
    out: dict = {"type": type(event).__name__}
    for name in event.__slots__:  # type: ignore[attr-defined]
        value = getattr(event, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif name == "topics":
            value = [[t.name, t.relevance, t.sentiment] for t in value]
        out[name] = value
    return out


def from_message(data: dict) -> object:
    """The inverse of `to_message`."""
    fields = dict(data)
    cls = _WIRE_TYPES[fields.pop("type")]
    for name in _DATETIME_FIELDS & set(fields):
        if fields[name] is not None:
            fields[name] = datetime.fromisoformat(fields[name])
    if "topics" in fields:
        fields["topics"] = tuple(TopicScore(*t) for t in fields["topics"])
    return cls(**fields)
