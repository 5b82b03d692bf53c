"""Stories: which articles report one event, and one vote per (story, topic) for listings and history.

Writes (from the stories stage, `monitor.stories`), inside `assignment_transaction`, which serialises
assignment across processes (a PostgreSQL advisory lock; SQLite's write lock), so two schedulers never
open two stories for one event at the same moment:

- `new_stories` / `add_members` place articles, keeping the story's counters in step
- `refresh_story_topics`        recompute the stories' votes from `article_topics` (after (re)scoring)

Reads: `members_since` (the clusterer's catch-up), `list_stories`, `get_story`, `story_of_articles`,
`first_links` and `count_stories` (the CLI, API and dashboard listings).
Story-counted rule windows are read from `article_topics` grouped by story (`monitor.store.windows`), so an
article not yet placed still counts, as a story of its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from monitor.params import ParamError
from monitor.store.tables import Article, ArticleTopic, Feed, Story, StoryArticle, StoryTopic
from monitor.timeutil import as_utc

_A = Article.__table__
_F = Feed.__table__
_T = ArticleTopic.__table__
_S = Story.__table__
_M = StoryArticle.__table__
_V = StoryTopic.__table__
_CHUNK = 500
# An arbitrary constant: the PostgreSQL advisory lock key that serialises story assignment.
_ASSIGN_LOCK_KEY = 7_304_211_012


@contextmanager
def assignment_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction in which a process may read the latest assignments and add its own."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write
        else:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ASSIGN_LOCK_KEY})
        try:
            yield connection
            connection.commit()
        except BaseException:
            connection.rollback()
            raise


# ============================================================================= what the clusterer reads


@dataclass(frozen=True, slots=True)
class ArticleFacts:
    article_id: int
    title: str
    summary: str
    source: str | None
    url: str | None
    feed: str
    language: str | None
    happened_at: datetime


def article_facts(connection: Connection, ids: Sequence[int]) -> dict[int, ArticleFacts]:
    out: dict[int, ArticleFacts] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(
            sa.select(_A.c.id, _A.c.title, _A.c.summary, _A.c.source, _A.c.url, _F.c.name, _A.c.language)
            .add_columns(_A.c.happened_at)
            .select_from(_A.join(_F, _F.c.id == _A.c.feed_id))
            .where(_A.c.id.in_(list(ids[start : start + _CHUNK])))
        )
        for row in rows:
            out[row[0]] = ArticleFacts(
                row[0], row[1] or "", row[2] or "", row[3], row[4], row[5], row[6], row[7]
            )
    return out


def article_topic_names(connection: Connection, ids: Sequence[int]) -> dict[int, frozenset[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(
            sa.select(_T.c.article_id, _T.c.topic).where(
                _T.c.article_id.in_(list(ids[start : start + _CHUNK]))
            )
        )
        for article_id, topic in rows:
            found[article_id].add(topic)
    return {key: frozenset(value) for key, value in found.items()}


@dataclass(frozen=True, slots=True)
class StoredMember:
    """An assigned article as the clusterer needs it to compare new arrivals."""

    seq: int
    article_id: int
    story_id: int
    story_first_seen: datetime
    happened_at: datetime
    title: str
    summary: str
    vector: bytes | None


def members_since(
    connection: Connection, after_seq: int, first_seen_from: datetime, limit: int = 5000
) -> list[StoredMember]:
    """Assignments after `after_seq` of stories first seen at or after `first_seen_from`, oldest first."""
    rows = connection.execute(
        sa.select(
            _M.c.seq,
            _M.c.article_id,
            _M.c.story_id,
            _S.c.first_seen,
            _M.c.happened_at,
            _A.c.title,
            _A.c.summary,
            _M.c.vector,
        )
        .select_from(_M.join(_S, _S.c.id == _M.c.story_id).join(_A, _A.c.id == _M.c.article_id))
        .where(_M.c.seq > after_seq, _S.c.first_seen >= first_seen_from)
        .order_by(_M.c.seq)
        .limit(limit)
    )
    return [StoredMember(r[0], r[1], r[2], r[3], r[4], r[5] or "", r[6] or "", r[7]) for r in rows]


def last_seq(connection: Connection) -> int:
    return int(connection.execute(sa.select(sa.func.coalesce(sa.func.max(_M.c.seq), 0))).scalar_one())


def stories_of(connection: Connection, ids: Sequence[int]) -> dict[int, int]:
    """article id -> story id, for the articles that already have one."""
    out: dict[int, int] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(
            sa.select(_M.c.article_id, _M.c.story_id).where(
                _M.c.article_id.in_(list(ids[start : start + _CHUNK]))
            )
        )
        out.update({int(a): int(s) for a, s in rows})
    return out


@dataclass(frozen=True, slots=True)
class StoredArticle:
    article_id: int
    happened_at: datetime
    vector: bytes | None  # from its current placement, if any


def articles_to_place(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 500,
) -> list[StoredArticle]:
    """A page of stored articles in [since, until), by (happened_at, id) after `after`: a rebuild's order."""
    query = sa.select(_A.c.id, _A.c.happened_at, _M.c.vector).select_from(
        _A.outerjoin(_M, _M.c.article_id == _A.c.id)
    )
    if since is not None:
        query = query.where(_A.c.happened_at >= as_utc(since))
    if until is not None:
        query = query.where(_A.c.happened_at < as_utc(until))
    if after is not None:
        at, article_id = after
        query = query.where(
            sa.or_(
                _A.c.happened_at > as_utc(at), sa.and_(_A.c.happened_at == as_utc(at), _A.c.id > article_id)
            )
        )
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(_A.c.happened_at, _A.c.id).limit(limit)).all()
    return [StoredArticle(int(r[0]), r[1], r[2]) for r in rows]


# ============================================================================= writes


@dataclass(frozen=True, slots=True)
class Placement:
    """One article placed in a story (a new one when `novel`)."""

    article_id: int
    story_id: int
    novel: bool
    source: str
    language: str | None
    happened_at: datetime
    similarity: float
    basis: str  # first | text | meaning
    vector: bytes | None


def new_stories(connection: Connection, firsts: Sequence[tuple[str, datetime]]) -> list[int]:
    """Story rows for first articles, (headline, first seen) each; ids in the same order. Counters are filled
    by `add_members`."""
    result = connection.execute(
        sa.insert(_S).returning(_S.c.id, sort_by_parameter_order=True),
        [
            {"headline": headline[:1000], "first_seen": as_utc(at), "last_seen": as_utc(at)}
            for headline, at in firsts
        ],
    )
    return [int(row[0]) for row in result]


def add_members(connection: Connection, placements: Sequence[Placement]) -> int:
    """Store placements (at most one per article: re-placing an article moves it); returns the seq reached."""
    if not placements:
        return last_seq(connection)
    ids = [p.article_id for p in placements]
    moved = set(stories_of(connection, ids).values())
    for start in range(0, len(ids), _CHUNK):
        connection.execute(sa.delete(_M).where(_M.c.article_id.in_(ids[start : start + _CHUNK])))
    connection.execute(
        sa.insert(_M),
        [
            {
                "article_id": p.article_id,
                "story_id": p.story_id,
                "novel": p.novel,
                "source": p.source[:300],
                "language": p.language,
                "happened_at": as_utc(p.happened_at),
                "similarity": p.similarity,
                "basis": p.basis,
                "vector": p.vector,
            }
            for p in placements
        ],
    )
    refresh_stories(connection, moved | {p.story_id for p in placements})
    return last_seq(connection)


def refresh_stories(connection: Connection, story_ids: Iterable[int]) -> None:
    """Recompute the stories' counters and votes from their members; a story left with none is deleted."""
    ids = sorted(set(story_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        members: dict[int, list[tuple]] = defaultdict(list)
        for row in connection.execute(
            sa.select(_M.c.story_id, _M.c.happened_at, _M.c.source, _M.c.language, _M.c.seq).where(
                _M.c.story_id.in_(chunk)
            )
        ):
            members[row[0]].append(row[1:])
        empty = [story_id for story_id in chunk if story_id not in members]
        if empty:
            connection.execute(sa.delete(_V).where(_V.c.story_id.in_(empty)))
            connection.execute(sa.delete(_S).where(_S.c.id.in_(empty)))
        updates = []
        for story_id, rows in members.items():
            rows.sort(key=lambda r: (as_utc(r[0]), r[3]))
            languages = list(dict.fromkeys(r[2] for r in rows if r[2]))
            updates.append(
                {
                    "story": story_id,
                    "first": as_utc(rows[0][0]),
                    "last": max(as_utc(r[0]) for r in rows),
                    "count": len(rows),
                    "publishers": len({r[1] for r in rows if r[1]}),
                    "langs": ",".join(languages)[:100],
                }
            )
        if updates:  # one statement, many rows: a round trip per batch, not per story
            connection.execute(
                sa.update(_S)
                .where(_S.c.id == sa.bindparam("story"))
                .values(
                    first_seen=sa.bindparam("first", type_=_S.c.first_seen.type),
                    last_seen=sa.bindparam("last", type_=_S.c.last_seen.type),
                    articles=sa.bindparam("count"),
                    sources=sa.bindparam("publishers"),
                    languages=sa.bindparam("langs"),
                ),
                updates,
            )
        refresh_story_topics(connection, [s for s in chunk if s in members])


def refresh_story_topics(connection: Connection, story_ids: Iterable[int]) -> None:
    """One vote per (story, topic): the mean sentiment of its articles toward the topic, the label most carry.

    Call after an article's topics change (scoring, rescoring) or a story's members change."""
    ids = sorted(set(story_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        connection.execute(sa.delete(_V).where(_V.c.story_id.in_(chunk)))
        votes: dict[tuple[int, str], list[tuple[float, str, str]]] = defaultdict(list)
        first_seen = dict(
            connection.execute(sa.select(_S.c.id, _S.c.first_seen).where(_S.c.id.in_(chunk))).all()
        )
        rows = connection.execute(
            sa.select(_M.c.story_id, _T.c.topic, _T.c.sentiment, _T.c.label, _M.c.source)
            .select_from(_M.join(_T, _T.c.article_id == _M.c.article_id))
            .where(_M.c.story_id.in_(chunk))
        )
        for story_id, topic, sentiment, label, source in rows:
            votes[(story_id, topic)].append((float(sentiment), label, source))
        values = []
        for (story_id, topic), items in votes.items():
            if story_id not in first_seen:
                continue
            values.append(
                {
                    "story_id": story_id,
                    "topic": topic,
                    "first_seen": first_seen[story_id],
                    "articles": len(items),
                    "sources": len({s for _x, _l, s in items if s}),
                    "sentiment": sum(x for x, _l, _s in items) / len(items),
                    "label": majority_label(label for _x, label, _s in items),
                }
            )
        if values:
            connection.execute(sa.insert(_V), values)


def majority_label(labels: Iterable[str]) -> str:
    """The label most articles carry; a tie between negative and positive is neutral."""
    counts = Counter(labels)
    best = max(counts.values(), default=0)
    winners = {label for label, n in counts.items() if n == best}
    if len(winners) == 1:
        return winners.pop()
    return "neutral"


def stories_of_articles(connection: Connection, article_ids: Sequence[int]) -> set[int]:
    return set(stories_of(connection, article_ids).values())


def clear_stories(
    connection: Connection, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Remove the stories first seen in [since, until) and their placements (before a rebuild)."""
    where = []
    if since is not None:
        where.append(_S.c.first_seen >= as_utc(since))
    if until is not None:
        where.append(_S.c.first_seen < as_utc(until))
    ids = [row[0] for row in connection.execute(sa.select(_S.c.id).where(*where))]
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        connection.execute(sa.delete(_V).where(_V.c.story_id.in_(chunk)))
        connection.execute(sa.delete(_M).where(_M.c.story_id.in_(chunk)))
        connection.execute(sa.delete(_S).where(_S.c.id.in_(chunk)))
    return len(ids)


# ============================================================================= listings


@dataclass(frozen=True, slots=True)
class StoryTopicVote:
    topic: str
    sentiment: float
    label: str
    articles: int
    sources: int


@dataclass(frozen=True, slots=True)
class StoryRow:
    id: int
    headline: str
    first_seen: datetime
    last_seen: datetime
    articles: int
    sources: int
    languages: tuple[str, ...]
    topics: tuple[StoryTopicVote, ...] = field(default_factory=tuple)
    source_names: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "headline": self.headline,
            "first_seen": as_utc(self.first_seen).isoformat().replace("+00:00", "Z"),
            "last_seen": as_utc(self.last_seen).isoformat().replace("+00:00", "Z"),
            "articles": self.articles,
            "sources": self.sources,
            "source_names": list(self.source_names),
            "languages": list(self.languages),
            "topics": [
                {
                    "topic": t.topic,
                    "sentiment": round(t.sentiment, 4),
                    "label": t.label,
                    "articles": t.articles,
                    "sources": t.sources,
                }
                for t in self.topics
            ],
        }


@dataclass(frozen=True, slots=True)
class StoryFilter:
    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    limit: int = 50
    order: str = "recent"  # recent | sources | most_negative | most_positive (the last two need a topic)


def list_stories(engine: Engine | Connection, flt: StoryFilter) -> list[StoryRow]:
    """Stories, most recent (or most covered, or most negative/positive toward the topic) first."""
    if isinstance(engine, Connection):
        return _list_stories(engine, flt)
    with engine.connect() as connection:
        return _list_stories(connection, flt)


def _list_stories(connection: Connection, flt: StoryFilter) -> list[StoryRow]:
    s = _S.c
    query = sa.select(s.id, s.headline, s.first_seen, s.last_seen, s.articles, s.sources, s.languages)
    if flt.topic:
        query = query.join(_V, sa.and_(_V.c.story_id == s.id, _V.c.topic == flt.topic))
    if flt.since is not None:
        query = query.where(s.first_seen >= as_utc(flt.since))
    if flt.until is not None:
        query = query.where(s.first_seen < as_utc(flt.until))
    if flt.search:
        pattern = "%" + flt.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        member_titles = (
            sa.select(_M.c.story_id)
            .join(_A, _A.c.id == _M.c.article_id)
            .where(_A.c.title.ilike(pattern, escape="\\"))
        )
        query = query.where(sa.or_(s.headline.ilike(pattern, escape="\\"), s.id.in_(member_titles)))
    order = {
        "recent": [s.first_seen.desc()],
        "sources": [s.sources.desc(), s.first_seen.desc()],
        "most_negative": [_V.c.sentiment.asc(), s.sources.desc()] if flt.topic else [s.first_seen.desc()],
        "most_positive": [_V.c.sentiment.desc(), s.sources.desc()] if flt.topic else [s.first_seen.desc()],
    }[flt.order]
    rows = connection.execute(query.order_by(*order, s.id.desc()).limit(flt.limit)).all()
    ids = [row[0] for row in rows]
    votes = _votes(connection, ids)
    names = _source_names(connection, ids)
    return [
        StoryRow(
            id=row[0],
            headline=row[1] or "",
            first_seen=row[2],
            last_seen=row[3],
            articles=row[4],
            sources=row[5],
            languages=tuple(filter(None, (row[6] or "").split(","))),
            topics=votes.get(row[0], ()),
            source_names=names.get(row[0], ()),
        )
        for row in rows
    ]


def get_story(engine: Engine, story_id: int) -> tuple[StoryRow, list[dict]] | None:
    """A story with its articles (id, title, url, source, language, happened_at, novel, basis)."""
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(_S.c.id, _S.c.headline, _S.c.first_seen, _S.c.last_seen, _S.c.articles, _S.c.sources)
            .add_columns(_S.c.languages)
            .where(_S.c.id == story_id)
        ).first()
        if row is None:
            return None
        story = StoryRow(
            id=row[0],
            headline=row[1] or "",
            first_seen=row[2],
            last_seen=row[3],
            articles=row[4],
            sources=row[5],
            languages=tuple(filter(None, (row[6] or "").split(","))),
            topics=_votes(connection, [story_id]).get(story_id, ()),
            source_names=_source_names(connection, [story_id]).get(story_id, ()),
        )
        members = connection.execute(
            sa.select(_A.c.id, _A.c.title, _A.c.url, _M.c.source, _M.c.language, _M.c.happened_at)
            .add_columns(_M.c.novel, _M.c.basis, _M.c.similarity)
            .select_from(_M.join(_A, _A.c.id == _M.c.article_id))
            .where(_M.c.story_id == story_id)
            .order_by(_M.c.happened_at, _M.c.seq)
        ).all()
    articles = [
        {
            "id": m[0],
            "title": m[1],
            "url": m[2],
            "source": m[3],
            "language": m[4],
            "happened_at": as_utc(m[5]).isoformat().replace("+00:00", "Z"),
            "novel": bool(m[6]),
            "basis": m[7],
            "similarity": round(float(m[8]), 4),
        }
        for m in members
    ]
    return story, articles


def _votes(connection: Connection, ids: Sequence[int]) -> dict[int, tuple[StoryTopicVote, ...]]:
    out: dict[int, list[StoryTopicVote]] = defaultdict(list)
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(
            sa.select(_V.c.story_id, _V.c.topic, _V.c.sentiment, _V.c.label, _V.c.articles, _V.c.sources)
            .where(_V.c.story_id.in_(list(ids[start : start + _CHUNK])))
            .order_by(_V.c.story_id, _V.c.topic)
        )
        for story_id, topic, sentiment, label, articles, sources in rows:
            out[story_id].append(StoryTopicVote(topic, float(sentiment), label, int(articles), int(sources)))
    return {key: tuple(value) for key, value in out.items()}


def _source_names(connection: Connection, ids: Sequence[int], limit: int = 12) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(
            sa.select(_M.c.story_id, _M.c.source)
            .where(_M.c.story_id.in_(list(ids[start : start + _CHUNK])))
            .order_by(_M.c.story_id, _M.c.happened_at, _M.c.seq)
        )
        for story_id, source in rows:
            if source and source not in out[story_id] and len(out[story_id]) < limit:
                out[story_id].append(source)
    return {key: tuple(value) for key, value in out.items()}


def story_of_articles(engine: Engine | Connection, article_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
    """article id -> (story id, novel): for article listings."""

    def read(connection: Connection) -> dict[int, tuple[int, bool]]:
        out: dict[int, tuple[int, bool]] = {}
        for start in range(0, len(article_ids), _CHUNK):
            rows = connection.execute(
                sa.select(_M.c.article_id, _M.c.story_id, _M.c.novel).where(
                    _M.c.article_id.in_(list(article_ids[start : start + _CHUNK]))
                )
            )
            out.update({int(a): (int(s), bool(n)) for a, s, n in rows})
        return out

    if isinstance(engine, Connection):
        return read(engine)
    with engine.connect() as connection:
        return read(connection)


def first_links(engine: Engine | Connection, story_ids: Sequence[int]) -> dict[int, str]:
    """story id -> the link of its earliest article: what a story listing points people to."""

    def read(connection: Connection) -> dict[int, str]:
        out: dict[int, str] = {}
        for start in range(0, len(story_ids), _CHUNK):
            rows = connection.execute(
                sa.select(_M.c.story_id, _A.c.url)
                .select_from(_M.join(_A, _A.c.id == _M.c.article_id))
                .where(_M.c.story_id.in_(list(story_ids[start : start + _CHUNK])), _A.c.url.is_not(None))
                .order_by(_M.c.story_id, _M.c.happened_at, _M.c.seq)
            )
            for story_id, url in rows:
                out.setdefault(int(story_id), url)
        return out

    if isinstance(engine, Connection):
        return read(engine)
    with engine.connect() as connection:
        return read(connection)


def count_stories(
    engine: Engine, since: datetime | None = None, until: datetime | None = None
) -> tuple[int, int]:
    """(stories, stories of more than one article) first seen in [since, until): a rebuild's summary."""
    query = sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((_S.c.articles > 1, 1), else_=0)), 0)
    )
    if since is not None:
        query = query.where(_S.c.first_seen >= as_utc(since))
    if until is not None:
        query = query.where(_S.c.first_seen < as_utc(until))
    with engine.connect() as connection:
        total, multi = connection.execute(query).one()
    return int(total), int(multi)


STORY_SORTS = ("recent", "sources", "most_negative", "most_positive")


def check_story_sort(sort: str, topic: str | None) -> str:
    """A listing order; the sentiment orders rank by the vote toward one topic, so they need it."""
    if sort not in STORY_SORTS:
        raise ParamError("sort", f"unknown order {sort!r} (choose from {', '.join(STORY_SORTS)})")
    if sort in ("most_negative", "most_positive") and not topic:
        raise ParamError("sort", f"{sort} ranks by sentiment toward one topic: give a topic too")
    return sort


def story_dicts(engine: Engine | Connection, rows: Sequence[StoryRow]) -> list[dict]:
    """Listing items for JSON: each story's fields plus `url`, the link of its earliest article."""
    links = first_links(engine, [row.id for row in rows])
    return [{**row.as_dict(), "url": links.get(row.id)} for row in rows]
