"""Window queries the alert rules read: per-topic statistics over a time window, and what explains them.

A window is half-open on the left: `start < happened_at <= end`. An article therefore counts from the
moment it happened until exactly `window` later, identically here and in the in-memory replay
(`monitor.alerts.replay`), so replayed history and live evaluation agree.

What a window counts (a rule's `count`):
- `stories` (the default): one vote per story (`story_articles`), however many copies of it arrive. A story's
  vote is the mean sentiment of its articles in the window, its label the one most of them carry
  (`majority_label`). A syndicated wire story carried by ten sites is one story, not ten articles, so copies
  cannot outvote independent coverage. An article not yet placed in a story counts as a story of its own
  (key `-article_id`), so nothing is lost between scoring and placement.
- `articles`: every article once, as before stories existed.

Either count is one aggregate query over the `(topic, happened_at)` index.

The window also reports the articles behind it and how many distinct publishers carry them
(`sources`: `story_articles.source`, or for an unplaced article `source_of(...)`, the same naming the stories
stage uses).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session

from monitor.store.stories import majority_label
from monitor.store.tables import Article, ArticleTopic, Feed, Story, StoryArticle, StoryTopic
from monitor.stories._text import source_of

NEGATIVE = "negative"
POSITIVE = "positive"

Count = Literal["stories", "articles"]
HeadlineOrder = Literal["most_negative", "most_positive", "recent", "most_covered"]

_T = ArticleTopic.__table__
_A = Article.__table__
_F = Feed.__table__
_M = StoryArticle.__table__
_S = Story.__table__
_V = StoryTopic.__table__
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Counts and mean of the topic-specific sentiment over one window, in the counted unit.

    `count`, `sentiment_sum`, `negative` and `positive` are per counted unit (stories or articles, see the
    module docstring). `articles` and `sources` are the evidence behind them: None when not read.
    """

    count: int
    sentiment_sum: float
    negative: int
    positive: int
    articles: int | None = None
    sources: int | None = None

    @property
    def mean(self) -> float | None:
        return self.sentiment_sum / self.count if self.count else None

    @property
    def neg_share(self) -> float | None:
        return self.negative / self.count if self.count else None

    @property
    def pos_share(self) -> float | None:
        return self.positive / self.count if self.count else None


EMPTY = WindowStats(0, 0.0, 0, 0, 0, 0)


@dataclass(slots=True)
class StoryTally:
    """One story's articles inside a window, in memory (the replay): its vote is their mean sentiment and
    `majority_label`, what `story_window_stats` forms in SQL."""

    articles: int = 0
    sentiment_sum: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)

    @property
    def mean(self) -> float:
        return self.sentiment_sum / self.articles if self.articles else 0.0

    @property
    def label(self) -> str:
        return majority_label(self.labels.elements())


# ============================================================================= window statistics


def topic_window_stats(
    session: Session,
    topic: str,
    start: datetime,
    end: datetime,
    count: Count = "articles",
    sources: bool = False,
) -> WindowStats:
    """Statistics of `topic` over `start < happened_at <= end`, counting `count` (one aggregate query).

    `sources=True` also counts the distinct publishers (one more query): only where they are read
    (`min_sources`, explanations), so an ordinary evaluation and a baseline cost no more than before."""
    if count == "stories":
        return story_window_stats(session, topic, start, end, sources)
    return article_window_stats(session, topic, start, end, sources)


def article_window_stats(
    session: Session, topic: str, start: datetime, end: datetime, sources: bool = False
) -> WindowStats:
    """Every article counts once: one aggregate over an indexed range scan."""
    t = _T.c
    query = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(t.sentiment), 0.0),
        sa.func.coalesce(sa.func.sum(sa.case((t.label == NEGATIVE, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((t.label == POSITIVE, 1), else_=0)), 0),
    ).where(t.topic == topic, t.happened_at > start, t.happened_at <= end)
    n, total, negative, positive = session.execute(query).one()
    publishers = window_sources(session, topic, start, end) if sources else None
    return WindowStats(int(n), float(total), int(negative), int(positive), int(n), publishers)


def story_window_stats(
    session: Session, topic: str, start: datetime, end: datetime, sources: bool = False
) -> WindowStats:
    """One vote per story, formed in the database: the window's rows grouped by story, then aggregated.

    A story's label is `majority_label`'s rule: the label most of its articles carry, strictly (any tie is
    neutral). The replay forms the same votes with `majority_label` itself (`StoryTally`)."""
    t = _T.c
    per_story = (
        sa.select(
            sa.func.count().label("n"),
            sa.func.sum(t.sentiment).label("total"),
            sa.func.sum(sa.case((t.label == NEGATIVE, 1), else_=0)).label("neg"),
            sa.func.sum(sa.case((t.label == POSITIVE, 1), else_=0)).label("pos"),
        )
        .select_from(_T.outerjoin(_M, _M.c.article_id == t.article_id))
        .where(*_in_window(topic, start, end))
        .group_by(_story_key())
        .subquery()
    )
    v = per_story.c
    other = v.n - v.neg - v.pos
    query = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(v.total / v.n), 0.0),
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(v.neg > v.pos, v.neg > other), 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(v.pos > v.neg, v.pos > other), 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(v.n), 0),
    )
    stories, total, negative, positive, articles = session.execute(query).one()
    publishers = window_sources(session, topic, start, end) if sources else None
    return WindowStats(int(stories), float(total), int(negative), int(positive), int(articles), publishers)


def window_sources(session: Session, topic: str, start: datetime, end: datetime) -> int:
    """Distinct publishers carrying the topic's articles in the window (placed: as the story stage named
    them; unplaced: named the same way here). DISTINCT collapses a placed story's copies in SQL."""
    unplaced = _M.c.article_id.is_(None)
    query = (
        sa.select(
            _M.c.source,
            sa.case((unplaced, _A.c.source), else_=None),
            sa.case((unplaced, _A.c.url), else_=None),
            sa.case((unplaced, _F.c.name), else_=None),
        )
        .distinct()
        .select_from(
            _T.join(_A, _A.c.id == _T.c.article_id)
            .join(_F, _F.c.id == _A.c.feed_id)
            .outerjoin(_M, _M.c.article_id == _T.c.article_id)
        )
        .where(*_in_window(topic, start, end))
    )
    names = {
        placed if placed is not None else source_of(source, url, feed)
        for placed, source, url, feed in session.execute(query)
    }
    return len(names - {""})


def coverage_total(
    session: Session, topics: Sequence[str], start: datetime, end: datetime, count: Count = "stories"
) -> int:
    """Stories (or articles) in the window carrying at least one of `topics`: coverage_share's denominator."""
    key = _story_key() if count == "stories" else _T.c.article_id
    query = (
        sa.select(sa.func.count(sa.distinct(key)))
        .select_from(_T.outerjoin(_M, _M.c.article_id == _T.c.article_id))
        .where(_T.c.topic.in_(list(topics)), _T.c.happened_at > start, _T.c.happened_at <= end)
    )
    return int(session.execute(query).scalar_one())


def _story_key() -> sa.ColumnElement[int]:
    """The story an article counts in: its story, or itself (negated id) while not yet placed."""
    return sa.func.coalesce(_M.c.story_id, -_T.c.article_id)


def _in_window(topic: str, start: datetime, end: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    return (_T.c.topic == topic, _T.c.happened_at > start, _T.c.happened_at <= end)


# ============================================================================= series (for replay)


class SeriesRow(NamedTuple):
    """One article of a topic, as the replay reads it (a 3-tuple of the first fields also works)."""

    happened_at: datetime
    sentiment: float
    label: str
    story: Hashable | None = None  # story id, or -article_id while unplaced; None: a story of its own
    source: str | None = None  # publisher


def topic_series(session: Session, topic: str, start: datetime, end: datetime) -> list[SeriesRow]:
    """Every article of `topic` in the range with its story and publisher, oldest first (for replay)."""
    unplaced = _M.c.article_id.is_(None)
    query = (
        sa.select(_T.c.happened_at, _T.c.sentiment, _T.c.label, _story_key(), _M.c.source)
        .add_columns(
            sa.case((unplaced, _A.c.source), else_=None),
            sa.case((unplaced, _A.c.url), else_=None),
            sa.case((unplaced, _F.c.name), else_=None),
        )
        .select_from(
            _T.join(_A, _A.c.id == _T.c.article_id)
            .join(_F, _F.c.id == _A.c.feed_id)
            .outerjoin(_M, _M.c.article_id == _T.c.article_id)
        )
        .where(*_in_window(topic, start, end))
        .order_by(_T.c.happened_at, _T.c.article_id)
    )
    return [
        SeriesRow(at, float(sentiment), label, int(story), placed if placed is not None else source_of(*rest))
        for at, sentiment, label, story, placed, *rest in session.execute(query)
    ]


def coverage_series(
    session: Session, topics: Sequence[str], start: datetime, end: datetime, count: Count = "stories"
) -> list[tuple[datetime, int]]:
    """(happened_at, story or article key) of every configured-topic row in the range, oldest first."""
    key = _story_key() if count == "stories" else _T.c.article_id
    query = (
        sa.select(_T.c.happened_at, key)
        .select_from(_T.outerjoin(_M, _M.c.article_id == _T.c.article_id))
        .where(_T.c.topic.in_(list(topics)), _T.c.happened_at > start, _T.c.happened_at <= end)
        .order_by(_T.c.happened_at, _T.c.article_id)
    )
    return [(row[0], int(row[1])) for row in session.execute(query)]


# ============================================================================= what explains a window


@dataclass(frozen=True, slots=True)
class Headline:
    article_id: int
    title: str
    url: str | None
    source: str | None
    sentiment: float
    label: str
    happened_at: datetime


def top_articles(
    session: Session, topic: str, start: datetime, end: datetime, order: HeadlineOrder, limit: int = 5
) -> list[Headline]:
    """The articles that contributed most to a window: most negative, most positive or most recent."""
    t, a, f = _T.c, _A.c, _F.c
    ordering = {
        "most_negative": (t.sentiment.asc(), t.happened_at.desc()),
        "most_positive": (t.sentiment.desc(), t.happened_at.desc()),
        "recent": (t.happened_at.desc(), t.sentiment.asc()),
        "most_covered": (t.happened_at.desc(), t.sentiment.asc()),  # an article is covered once
    }[order]
    query = (
        sa.select(
            a.id, a.title, a.url, sa.func.coalesce(a.source, f.name), t.sentiment, t.label, t.happened_at
        )
        .select_from(_T.join(_A, a.id == t.article_id).join(_F, f.id == a.feed_id))
        .where(t.topic == topic, t.happened_at > start, t.happened_at <= end)
        .order_by(*ordering, a.id.desc())
        .limit(limit)
    )
    return [
        Headline(int(row[0]), row[1] or "", row[2], row[3], float(row[4]), row[5], row[6])
        for row in session.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class WindowStory:
    """A story with articles of the topic in the window: what an alert shows instead of repeated copies."""

    key: int  # story id, or -article_id for an article not yet placed
    headline: str
    sentiment: float  # the story's sentiment toward the topic (story_topics), its vote
    label: str
    sources: int  # distinct publishers carrying the story
    articles: int  # all its articles
    window_articles: int  # of the topic, inside the window
    first_seen: datetime
    last_in_window: datetime
    url: str | None = None  # the first article's link (filled for the top stories only)
    source: str | None = None  # the first article's publisher

    @property
    def story_id(self) -> int | None:
        return self.key if self.key > 0 else None


def window_stories(session: Session, topic: str, start: datetime, end: datetime) -> list[WindowStory]:
    """Every story with articles of `topic` in the window, unordered (a few hundred at most per window)."""
    key = _story_key()
    query = (
        sa.select(key, sa.func.count(), sa.func.sum(_T.c.sentiment), sa.func.max(_T.c.happened_at))
        .add_columns(sa.func.max(_T.c.label))
        .select_from(_T.outerjoin(_M, _M.c.article_id == _T.c.article_id))
        .where(*_in_window(topic, start, end))
        .group_by(key)
    )
    groups = {int(row[0]): row[1:] for row in session.execute(query)}
    placed = _placed_facts(session, topic, [k for k in groups if k > 0])
    unplaced = _unplaced_facts(session, [-k for k in groups if k < 0])
    out: list[WindowStory] = []
    for story, (n, total, last, label) in groups.items():
        n = int(n)
        facts = placed.get(story) if story > 0 else unplaced.get(-story)
        if facts is None:  # placed or deleted meanwhile: the window's own numbers
            facts = ("", float(total) / n, label, 1, n, last)
        headline, sentiment, story_label, sources, articles, first_seen = facts
        out.append(
            WindowStory(
                story,
                headline,
                float(total) / n if sentiment is None else sentiment,
                story_label or label,
                sources,
                articles,
                n,
                first_seen,
                last,
            )
        )
    return out


def top_stories(
    stories: Sequence[WindowStory], session: Session, order: HeadlineOrder, limit: int = 5
) -> list[WindowStory]:
    """The `limit` stories that explain a window best in `order`, each with its first article's link."""
    chosen = sorted(stories, key=lambda s: _rank(s, order))[:limit]
    links = _first_articles(session, [s.key for s in chosen])
    return [_with_link(s, links.get(s.key)) for s in chosen]


def _rank(s: WindowStory, order: HeadlineOrder) -> tuple[float, ...]:
    """Sort key: the order's own criterion, then wider coverage, then the latest."""
    coverage = (-s.sources, -s.window_articles, -s.last_in_window.timestamp(), -s.key)
    if order == "most_negative":
        return (s.sentiment, *coverage)
    if order == "most_positive":
        return (-s.sentiment, *coverage)
    if order == "recent":
        return (-s.last_in_window.timestamp(), *coverage)
    return coverage


def _with_link(story: WindowStory, link: tuple[str | None, str | None] | None) -> WindowStory:
    return story if link is None else replace(story, url=link[0], source=link[1])


def _placed_facts(session: Session, topic: str, ids: Sequence[int]) -> dict[int, tuple]:
    """story id -> (headline, topic sentiment, topic label, sources, articles, first_seen)."""
    out: dict[int, tuple] = {}
    for start in range(0, len(ids), _CHUNK):
        query = (
            sa.select(_S.c.id, _S.c.headline, _V.c.sentiment, _V.c.label, _S.c.sources, _S.c.articles)
            .add_columns(_S.c.first_seen)
            .select_from(_S.outerjoin(_V, sa.and_(_V.c.story_id == _S.c.id, _V.c.topic == topic)))
            .where(_S.c.id.in_(list(ids[start : start + _CHUNK])))
        )
        for row in session.execute(query):
            out[int(row[0])] = (row[1] or "", row[2], row[3], int(row[4]), int(row[5]), row[6])
    return out


def _unplaced_facts(session: Session, ids: Sequence[int]) -> dict[int, tuple]:
    """article id -> the same facts for an article that is its own story (its sentiment: the window's)."""
    out: dict[int, tuple] = {}
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(_A.c.id, _A.c.title, _A.c.happened_at).where(
            _A.c.id.in_(list(ids[start : start + _CHUNK]))
        )
        for article_id, title, happened_at in session.execute(query):
            out[int(article_id)] = (title or "", None, None, 1, 1, happened_at)
    return out


def _first_articles(session: Session, keys: Sequence[int]) -> dict[int, tuple[str | None, str | None]]:
    """story key -> (url, publisher) of its first article: the link a message shows."""
    out: dict[int, tuple[str | None, str | None]] = {}
    stories = [k for k in keys if k > 0]
    if stories:
        query = (
            sa.select(_M.c.story_id, _A.c.url, _M.c.source)
            .select_from(_M.join(_A, _A.c.id == _M.c.article_id))
            .where(_M.c.story_id.in_(stories))
            .order_by(_M.c.story_id, _M.c.happened_at, _M.c.seq)
        )
        for story, url, source in session.execute(query):
            out.setdefault(int(story), (url, source or None))
    articles = [-k for k in keys if k < 0]
    if articles:
        query = (
            sa.select(_A.c.id, _A.c.url, _A.c.source, _F.c.name)
            .select_from(_A.join(_F, _F.c.id == _A.c.feed_id))
            .where(_A.c.id.in_(articles))
        )
        for article_id, url, source, feed in session.execute(query):
            out[-int(article_id)] = (url, source_of(source, url, feed) or None)
    return out
