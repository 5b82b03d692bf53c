"""Articles: the collector's deduplicating writes and the article queries (CLI `monitor articles`, API).

Writes: `store_articles(session, ...)` inserts entries whose dedupe key is new and updates the stored
row when an entry with the same key comes back with another title or text (a new revision). Only the
feed that first stored an article updates it: when two feeds carry the same URL with different
headline styles, they must not flip the row back and forth on every poll.

Reads: `list_articles(engine, ArticleFilter(...))` - typed filters, one query plus one for topics and one
for stories (a lookup by id, so the story join never changes the plan of the tuned main query).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op
from sqlmodel import Session

from monitor.store.stories import story_of_articles
from monitor.store.tables import Article, ArticleScore, ArticleTopic, Feed

log = logging.getLogger(__name__)

_A = Article.__table__
_S = ArticleScore.__table__
_T = ArticleTopic.__table__
_F = Feed.__table__
_CHUNK = 500


# ============================================================================= writes


@dataclass(frozen=True, slots=True)
class ArticleInput:
    """A normalised entry with its dedupe key, ready to store."""

    dedupe_key: str
    title: str
    summary: str
    content_hash: str
    url: str | None = None
    guid: str | None = None
    author: str | None = None
    source: str | None = None
    language: str | None = None
    published_at: datetime | None = None


@dataclass
class StoreOutcome:
    new: list[tuple[int, ArticleInput]] = field(default_factory=list)
    updated: list[tuple[int, ArticleInput]] = field(default_factory=list)
    unchanged: int = 0


def _insert(dialect: str) -> type:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def existing_by_key(connection: Connection, keys: Sequence[str]) -> dict[str, sa.Row]:
    out: dict[str, sa.Row] = {}
    for start in range(0, len(keys), _CHUNK):
        rows = connection.execute(
            sa.select(
                _A.c.id,
                _A.c.dedupe_key,
                _A.c.feed_id,
                _A.c.content_hash,
                _A.c.published_at,
                _A.c.collected_at,
            ).where(_A.c.dedupe_key.in_(keys[start : start + _CHUNK]))
        ).all()
        out.update({row.dedupe_key: row for row in rows})
    return out


def store_articles(
    session: Session, *, feed_id: int, items: Sequence[ArticleInput], now: datetime
) -> StoreOutcome:
    """Insert new entries, update edited ones (same key, other content), count the rest.

    Safe against a concurrent writer storing the same key: the insert skips conflicts, and such
    entries count as unchanged (the other writer emitted them).
    """
    outcome = StoreOutcome()
    if not items:
        return outcome
    connection = session.connection()
    by_key: dict[str, ArticleInput] = {}
    for item in items:
        by_key.setdefault(item.dedupe_key, item)  # callers dedupe; first occurrence wins regardless
    existing = existing_by_key(connection, list(by_key))

    fresh = [item for key, item in by_key.items() if key not in existing]
    if fresh:
        insert = _insert(connection.dialect.name)
        rows = [
            {
                "feed_id": feed_id,
                "dedupe_key": item.dedupe_key,
                "url": item.url,
                "guid": item.guid,
                "title": item.title,
                "summary": item.summary,
                "author": item.author,
                "source": item.source,
                "language": item.language,
                "content_hash": item.content_hash,
                "published_at": item.published_at,
                "collected_at": now,
                "updated_at": None,
                "happened_at": item.published_at or now,
                "revision": 1,
            }
            for item in fresh
        ]
        for start in range(0, len(rows), _CHUNK):
            result = connection.execute(
                insert(_A)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(_A.c.id, _A.c.dedupe_key),
                rows[start : start + _CHUNK],
            )
            for article_id, key in result.all():
                outcome.new.append((article_id, by_key[key]))
        outcome.unchanged += len(fresh) - len(outcome.new)

    changed: list[tuple[sa.Row, ArticleInput]] = []
    for key, item in by_key.items():
        row = existing.get(key)
        if row is None:
            continue
        if row.content_hash != item.content_hash and row.feed_id == feed_id:
            changed.append((row, item))
        else:
            outcome.unchanged += 1
    if changed:
        params = []
        for row, item in changed:
            published = item.published_at or row.published_at
            params.append(
                {
                    "_id": row.id,
                    "_hash": row.content_hash,
                    "title": item.title,
                    "summary": item.summary,
                    "content_hash": item.content_hash,
                    "url": item.url,
                    "author": item.author,
                    "source": item.source,
                    "language": item.language,
                    "published_at": published,
                    "happened_at": published or row.collected_at,
                    "updated_at": now,
                }
            )
        statement = (
            sa.update(_A)
            # `content_hash = old` makes a concurrent identical update a no-op instead of a double revision.
            .where(_A.c.id == sa.bindparam("_id"), _A.c.content_hash == sa.bindparam("_hash"))
            .values(
                title=sa.bindparam("title"),
                summary=sa.bindparam("summary"),
                content_hash=sa.bindparam("content_hash"),
                url=sa.bindparam("url"),
                author=sa.bindparam("author"),
                source=sa.bindparam("source"),
                language=sa.bindparam("language"),
                published_at=sa.bindparam("published_at"),
                happened_at=sa.bindparam("happened_at"),
                updated_at=sa.bindparam("updated_at"),
                revision=_A.c.revision + 1,
            )
        )
        connection.execute(statement, params)
        outcome.updated.extend((row.id, item) for row, item in changed)
    return outcome


# ============================================================================= reads


SORTS = ("newest", "oldest", "most_negative", "most_positive")


@dataclass(frozen=True)
class ArticleFilter:
    """What `list_articles` selects. Times filter `happened_at` (published, else collected) in [since, until).

    With exactly one topic, rows also carry that topic's relevance/sentiment/label, and min_score,
    max_score and the score sorts use the topic sentiment instead of the article score.
    """

    topics: Sequence[str] = ()  # any of these topics
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None  # every word must appear in the title or the summary (case-insensitive)
    feeds: Sequence[str] = ()
    language: str | None = None  # "zh" also matches "zh-tw"
    label: str | None = None  # negative | neutral | positive (scored articles only)
    min_score: float | None = None
    max_score: float | None = None
    sort: str = "newest"  # newest | oldest | most_negative | most_positive
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {self.sort!r}")
        if isinstance(self.topics, str):
            object.__setattr__(self, "topics", (self.topics,))
        if isinstance(self.feeds, str):
            object.__setattr__(self, "feeds", (self.feeds,))

    @property
    def single_topic(self) -> str | None:
        return self.topics[0] if len(self.topics) == 1 else None


@dataclass(frozen=True)
class ArticleTopicScore:
    topic: str
    relevance: float
    sentiment: float
    label: str


@dataclass(frozen=True)
class ArticleRow:
    id: int
    title: str
    url: str | None
    feed: str
    source: str | None
    language: str | None
    published_at: datetime | None
    collected_at: datetime
    happened_at: datetime
    updated_at: datetime | None
    revision: int
    summary: str
    score: float | None = None
    label: str | None = None
    confidence: float | None = None
    model: str | None = None
    topics: tuple[ArticleTopicScore, ...] = ()
    # With a single-topic filter: that topic's scores for this article.
    topic_relevance: float | None = None
    topic_sentiment: float | None = None
    topic_label: str | None = None
    # The story the article was placed in, and whether it opened it; None while not placed yet.
    story_id: int | None = None
    novel: bool | None = None

    def as_dict(self) -> dict:
        """Plain types for JSON/CSV (datetimes stay datetimes; the CLI and API format them)."""
        data = asdict(self)
        data["topics"] = [asdict(t) for t in self.topics]
        return data


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _topic_join(flt: ArticleFilter) -> sa.Alias | None:
    return _T.alias("topic_filter") if flt.single_topic else None


def _from(flt: ArticleFilter, topic: sa.Alias | None) -> sa.FromClause:
    source = _A.join(_F, _F.c.id == _A.c.feed_id).outerjoin(_S, _S.c.article_id == _A.c.id)
    if topic is not None:
        source = source.join(topic, sa.and_(topic.c.article_id == _A.c.id, topic.c.topic == flt.single_topic))
    return source


def _unindexed(column: sa.ColumnElement) -> sa.ColumnElement:
    """SQLite's unary `+`: the same value, but the term can no longer select an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _filtered(
    query: sa.Select, flt: ArticleFilter, topic: sa.Alias | None, *, time_index: bool = True
) -> sa.Select:
    time_columns = [_A.c.happened_at]
    if topic is not None:
        # The topic row carries a copy of happened_at: lets the planner use (topic, happened_at).
        time_columns.append(topic.c.happened_at)
    for column in time_columns:
        column = column if time_index else _unindexed(column)
        if flt.since is not None:
            query = query.where(column >= flt.since)
        if flt.until is not None:
            query = query.where(column < flt.until)
    if flt.topics and topic is None:
        query = query.where(sa.exists().where(_T.c.article_id == _A.c.id, _T.c.topic.in_(list(flt.topics))))
    if flt.feeds:
        query = query.where(_F.c.name.in_(list(flt.feeds)))
    if flt.language:
        language = flt.language.strip().lower()
        query = query.where(
            sa.or_(_A.c.language == language, _A.c.language.like(f"{_escape_like(language)}-%", escape="\\"))
        )
    if flt.label:
        query = query.where((topic.c.label if topic is not None else _S.c.label) == flt.label)
    score = topic.c.sentiment if topic is not None else _S.c.score
    if flt.min_score is not None:
        query = query.where(score >= flt.min_score)
    if flt.max_score is not None:
        query = query.where(score <= flt.max_score)
    for word in (flt.search or "").split():
        pattern = f"%{_escape_like(word)}%"
        query = query.where(
            sa.or_(_A.c.title.ilike(pattern, escape="\\"), _A.c.summary.ilike(pattern, escape="\\"))
        )
    return query


def _order(flt: ArticleFilter, topic: sa.Alias | None) -> list:
    score = topic.c.sentiment if topic is not None else _S.c.score
    # Unscored articles last; a topic's sentiment is never NULL, and without the CASE the
    # (topic, sentiment) index can deliver the order.
    nulls_last = [sa.case((score.is_(None), 1), else_=0)] if topic is None else []
    # With a topic, order by the topic row's copies (same values) so (topic, happened_at) gives the order.
    happened = topic.c.happened_at if topic is not None else _A.c.happened_at
    ident = topic.c.article_id if topic is not None else _A.c.id
    if flt.sort == "oldest":
        return [happened.asc(), ident.asc()]
    if flt.sort == "most_negative":
        return [*nulls_last, score.asc(), happened.desc(), ident.desc()]
    if flt.sort == "most_positive":
        return [*nulls_last, score.desc(), happened.desc(), ident.desc()]
    return [happened.desc(), ident.desc()]


# SQLite: from this many topic rows in the range on, walking (topic, sentiment) in order and skipping rows
# outside the range beats sorting the range (SQLite's planner cannot tell; PostgreSQL's can).
_SENTIMENT_INDEX_FROM = 2000


def _walk_sentiment_index(connection: Connection, flt: ArticleFilter, topic: sa.Alias | None) -> bool:
    """SQLite only: should the query walk (topic, sentiment) rather than sort the whole time range?"""
    if (
        connection.dialect.name != "sqlite"
        or topic is None
        or flt.sort not in ("most_negative", "most_positive")
        or flt.since is None
    ):
        return False
    count = (
        sa.select(sa.func.count())
        .select_from(_T)
        .where(_T.c.topic == flt.single_topic, _T.c.happened_at >= flt.since)
    )
    if flt.until is not None:
        count = count.where(_T.c.happened_at < flt.until)
    return connection.execute(count).scalar_one() >= _SENTIMENT_INDEX_FROM


def list_articles(engine: Engine | Connection, flt: ArticleFilter) -> list[ArticleRow]:
    """Stored articles (newest first by default) with their score and topics when scored."""
    topic = _topic_join(flt)
    columns = [
        _A.c.id,
        _A.c.title,
        _A.c.url,
        _F.c.name.label("feed"),
        _A.c.source,
        _A.c.language,
        _A.c.published_at,
        _A.c.collected_at,
        _A.c.happened_at,
        _A.c.updated_at,
        _A.c.revision,
        _A.c.summary,
        _S.c.score,
        _S.c.label,
        _S.c.confidence,
        _S.c.model_name,
    ]
    if topic is not None:
        columns += [
            topic.c.relevance.label("t_relevance"),
            topic.c.sentiment.label("t_sentiment"),
            topic.c.label.label("t_label"),
        ]
    own = isinstance(engine, Engine)
    connection = engine.connect() if own else engine
    try:
        time_index = not _walk_sentiment_index(connection, flt, topic)
        query = _filtered(
            sa.select(*columns).select_from(_from(flt, topic)), flt, topic, time_index=time_index
        )
        query = query.order_by(*_order(flt, topic)).limit(max(0, flt.limit)).offset(max(0, flt.offset))
        rows = connection.execute(query).all()
        topics = _topics(connection, [row.id for row in rows])
        stories = story_of_articles(connection, [row.id for row in rows])
    finally:
        if own:
            connection.close()
    return [
        ArticleRow(
            id=row.id,
            title=row.title,
            url=row.url,
            feed=row.feed,
            source=row.source,
            language=row.language,
            published_at=row.published_at,
            collected_at=row.collected_at,
            happened_at=row.happened_at,
            updated_at=row.updated_at,
            revision=row.revision,
            summary=row.summary or "",
            score=row.score,
            label=row.label,
            confidence=row.confidence,
            model=row.model_name,
            topics=topics.get(row.id, ()),
            topic_relevance=row.t_relevance if topic is not None else None,
            topic_sentiment=row.t_sentiment if topic is not None else None,
            topic_label=row.t_label if topic is not None else None,
            story_id=stories[row.id][0] if row.id in stories else None,
            novel=stories[row.id][1] if row.id in stories else None,
        )
        for row in rows
    ]


def count_articles(engine: Engine | Connection, flt: ArticleFilter) -> int:
    """How many articles match (ignoring limit/offset): for paging."""
    topic = _topic_join(flt)
    query = _filtered(sa.select(sa.func.count()).select_from(_from(flt, topic)), flt, topic)
    if isinstance(engine, Engine):
        with engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
    return int(engine.execute(query).scalar_one())


def _topics(connection: Connection, ids: Sequence[int]) -> dict[int, tuple[ArticleTopicScore, ...]]:
    out: dict[int, list[ArticleTopicScore]] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(
            sa.select(_T.c.article_id, _T.c.topic, _T.c.relevance, _T.c.sentiment, _T.c.label)
            .where(_T.c.article_id.in_(list(ids[start : start + _CHUNK])))
            .order_by(_T.c.article_id, _T.c.relevance.desc())
        ).all()
        for row in rows:
            out.setdefault(row.article_id, []).append(
                ArticleTopicScore(row.topic, float(row.relevance), float(row.sentiment), row.label)
            )
    return {key: tuple(value) for key, value in out.items()}


def article_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(_A)).scalar_one())
