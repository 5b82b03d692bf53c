"""Per-topic sentiment history: the `article_topics` writes that keep the rollup exact, and the queries.

`article_topics` is the source of truth. `topic_rollup` holds its 15-minute totals per topic
(articles, sum of sentiment, negative and positive counts) so that a 30-day hourly history reads a
few thousand rows instead of hundreds of thousands. The rollup is maintained in the same transaction
as every `article_topics` change, through the three functions below; nothing else writes either table:

- `replace_article_topics(session, items)`  the classifier stores (or re-stores) an article's topics
- `forget_articles(session, article_ids)`   before articles are deleted (retention)
- `refresh_rollup(session, ...)`            recompute cells from `article_topics` (repair, after bulk work)

History queries take an exact half-open range [since, until): whole 15-minute cells come from the
rollup, the partial cells at either edge from `article_topics` directly. Buckets are aligned to the
bucket size in the requested time zone (days start at local midnight) and empty buckets are returned.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from monitor.params import ParamError
from monitor.store.tables import ArticleTopic, TopicRollup
from monitor.timeutil import as_utc

log = logging.getLogger(__name__)

CELL = timedelta(minutes=15)
_EPS = timedelta(microseconds=1)
_CELL_SECONDS = int(CELL.total_seconds())
_AT = ArticleTopic.__table__
_RU = TopicRollup.__table__


# ============================================================================= writes


@dataclass(frozen=True, slots=True)
class TopicRow:
    """One topic of one article, as the classifier produced it."""

    topic: str
    relevance: float
    sentiment: float
    label: str  # negative | neutral | positive


@dataclass(frozen=True, slots=True)
class ArticleTopics:
    """All topics of one article (an empty `topics` removes the article from every topic)."""

    article_id: int
    happened_at: datetime
    topics: Sequence[TopicRow]


def cell_start(at: datetime) -> datetime:
    """The 15-minute rollup cell (UTC) that contains `at`."""
    at = as_utc(at)
    seconds = int(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % _CELL_SECONDS, UTC)


class _Deltas:
    """Accumulated rollup changes per (topic, cell), applied with one upsert per cell."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, datetime], list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])

    def add(self, topic: str, happened_at: datetime, sentiment: float, label: str, sign: int) -> None:
        cell = self.cells[(topic, cell_start(happened_at))]
        cell[0] += sign
        cell[1] += sign * float(sentiment)
        cell[2] += sign * (label == "negative")
        cell[3] += sign * (label == "positive")

    def apply(self, connection: Connection) -> None:
        rows = [
            {
                "topic": topic,
                "bucket_start": start,
                "articles": int(d[0]),
                "sentiment_sum": d[1],
                "negative": int(d[2]),
                "positive": int(d[3]),
            }
            for (topic, start), d in self.cells.items()
            if d[0] or d[2] or d[3] or abs(d[1]) > 0
        ]
        if not rows:
            return
        insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(_RU)
        upsert = insert.on_conflict_do_update(
            index_elements=[_RU.c.topic, _RU.c.bucket_start],
            set_={
                "articles": _RU.c.articles + insert.excluded.articles,
                "sentiment_sum": _RU.c.sentiment_sum + insert.excluded.sentiment_sum,
                "negative": _RU.c.negative + insert.excluded.negative,
                "positive": _RU.c.positive + insert.excluded.positive,
            },
        )
        # Sorted: concurrent writers lock cells in the same order (no deadlocks on PostgreSQL).
        rows.sort(key=lambda r: (r["topic"], r["bucket_start"]))
        connection.execute(upsert, rows)
        # Only cells that lost articles can have become empty.
        emptied = [{"t": r["topic"], "b": r["bucket_start"]} for r in rows if r["articles"] < 0]
        if emptied:
            connection.execute(
                sa.delete(_RU).where(
                    _RU.c.topic == sa.bindparam("t"),
                    _RU.c.bucket_start == sa.bindparam("b", type_=_RU.c.bucket_start.type),
                    _RU.c.articles <= 0,
                ),
                emptied,
            )


def _connection(session: Session | Connection) -> Connection:
    return session.connection() if isinstance(session, Session) else session


def replace_article_topics(session: Session | Connection, items: Iterable[ArticleTopics]) -> None:
    """Store the topics of each article, replacing what was stored before, and update the rollup.

    Call inside the transaction that stores the article's score. Safe to call again for the same
    article (a rescore or an edited article): the old rows are subtracted, the new ones added.
    """
    items = list(items)
    if not items:
        return
    connection = _connection(session)
    ids = sorted({item.article_id for item in items})
    deltas = _Deltas()
    for chunk in _chunks(ids, 500):
        old = connection.execute(
            sa.select(_AT.c.topic, _AT.c.happened_at, _AT.c.sentiment, _AT.c.label).where(
                _AT.c.article_id.in_(chunk)
            )
        ).all()
        for topic, happened_at, sentiment, label in old:
            deltas.add(topic, happened_at, sentiment, label, -1)
        connection.execute(sa.delete(_AT).where(_AT.c.article_id.in_(chunk)))
    rows = []
    seen: set[tuple[int, str]] = set()
    for item in items:
        for topic in item.topics:
            key = (item.article_id, topic.topic)
            if key in seen:  # the last entry for an (article, topic) wins
                rows = [r for r in rows if (r["article_id"], r["topic"]) != key]
            seen.add(key)
            rows.append(
                {
                    "article_id": item.article_id,
                    "topic": topic.topic,
                    "relevance": float(topic.relevance),
                    "sentiment": float(topic.sentiment),
                    "label": topic.label,
                    "happened_at": as_utc(item.happened_at),
                }
            )
    if rows:
        connection.execute(sa.insert(_AT), rows)
    for row in rows:
        deltas.add(row["topic"], row["happened_at"], row["sentiment"], row["label"], +1)
    deltas.apply(connection)


def forget_articles(session: Session | Connection, article_ids: Iterable[int]) -> int:
    """Delete the `article_topics` rows of these articles and subtract them from the rollup.

    Call before deleting the articles themselves (retention), in the same transaction. Returns the
    number of topic rows removed.
    """
    connection = _connection(session)
    deltas = _Deltas()
    removed = 0
    for chunk in _chunks(sorted(set(article_ids)), 500):
        old = connection.execute(
            sa.select(_AT.c.topic, _AT.c.happened_at, _AT.c.sentiment, _AT.c.label).where(
                _AT.c.article_id.in_(chunk)
            )
        ).all()
        for topic, happened_at, sentiment, label in old:
            deltas.add(topic, happened_at, sentiment, label, -1)
        removed += len(old)
        connection.execute(sa.delete(_AT).where(_AT.c.article_id.in_(chunk)))
    deltas.apply(connection)
    return removed


def retire_articles(session: Session | Connection, article_ids: Iterable[int]) -> int:
    """Delete the `article_topics` rows of these articles but KEEP their totals in the rollup.

    Retention (monitor.store.retention) deletes old articles while the history aggregates stay: past the
    retention horizon the rollup is the only record of those periods, so `refresh_rollup` must not be run
    over them. Call before deleting the articles, in the same transaction. Returns the topic rows removed.
    """
    connection = _connection(session)
    removed = 0
    for chunk in _chunks(sorted(set(article_ids)), 500):
        removed += connection.execute(sa.delete(_AT).where(_AT.c.article_id.in_(chunk))).rowcount or 0
    return removed


def refresh_rollup(
    session: Session | Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    topics: Sequence[str] | None = None,
) -> int:
    """Recompute the rollup cells overlapping [since, until) from `article_topics`; returns cells written.

    Use after bulk loads or deletes that bypassed the functions above (and in `bench/`); also a repair.
    """
    connection = _connection(session)
    lo = cell_start(since) if since else None
    hi = cell_start(until) + CELL if until else None
    where_ru, where_at = [], []
    if lo is not None:
        where_ru.append(_RU.c.bucket_start >= lo)
        where_at.append(_AT.c.happened_at >= lo)
    if hi is not None:
        where_ru.append(_RU.c.bucket_start < hi)
        where_at.append(_AT.c.happened_at < hi)
    if topics:
        where_ru.append(_RU.c.topic.in_(list(topics)))
        where_at.append(_AT.c.topic.in_(list(topics)))
    connection.execute(sa.delete(_RU).where(*where_ru))
    cell = _cell_expression(connection)
    select = (
        sa.select(
            _AT.c.topic,
            cell.label("bucket_start"),
            sa.func.count().label("articles"),
            sa.func.sum(_AT.c.sentiment).label("sentiment_sum"),
            sa.func.sum(sa.case((_AT.c.label == "negative", 1), else_=0)).label("negative"),
            sa.func.sum(sa.case((_AT.c.label == "positive", 1), else_=0)).label("positive"),
        )
        .where(*where_at)
        .group_by(_AT.c.topic, cell)
    )
    result = connection.execute(
        sa.insert(_RU).from_select(
            ["topic", "bucket_start", "articles", "sentiment_sum", "negative", "positive"], select
        )
    )
    return result.rowcount or 0


def _cell_expression(connection: Connection) -> sa.ColumnElement:
    """SQL for the 15-minute cell of `happened_at`, as the same naive-UTC timestamp the column stores."""
    if connection.dialect.name == "postgresql":
        return sa.func.date_bin(
            sa.text("interval '15 minutes'"), _AT.c.happened_at, sa.text("timestamp '2000-01-01'")
        )
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff'; rebuild that text for the cell start.
    epoch = sa.cast(sa.func.strftime("%s", _AT.c.happened_at), sa.Integer)
    return sa.func.strftime("%Y-%m-%d %H:%M:%S.000000", epoch - (epoch % _CELL_SECONDS), "unixepoch")


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# ============================================================================= buckets

# Bucket sizes the history accepts: sub-day sizes divide a day; days start at local midnight.
BUCKETS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "3h": timedelta(hours=3),
    "6h": timedelta(hours=6),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
}
MAX_BUCKETS = 20_000  # per topic and request: 15-minute buckets over 200 days


class HistoryError(ParamError):
    """A history request that cannot be answered; `param` names the offending parameter."""


def bucket_starts(
    since: datetime, until: datetime, bucket: str, tz: str | ZoneInfo = "UTC"
) -> list[datetime]:
    """Aligned bucket starts (aware UTC) covering [since, until); the first one is at or before `since`."""
    if bucket not in BUCKETS:
        raise HistoryError("bucket", f"unknown bucket {bucket!r} (choose from {', '.join(BUCKETS)})")
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    since, until = as_utc(since), as_utc(until)
    size = BUCKETS[bucket]
    local = since.astimezone(zone)
    midnight = _local_midnight(local.date(), zone)
    starts: list[datetime] = []
    if size == timedelta(days=1):
        day = local.date()
        if midnight > since:  # a midnight that does not exist locally: the day starts later
            day -= timedelta(days=1)
        current = _local_midnight(day, zone)
        while current < until:
            starts.append(current)
            if len(starts) > MAX_BUCKETS:
                break
            day += timedelta(days=1)
            current = _local_midnight(day, zone)
        return starts
    # Sub-day sizes: step in absolute time from the local midnight of `since`, re-anchoring at each
    # local midnight so a DST change never shifts the grid.
    elapsed = (since - midnight) // size
    current = midnight + elapsed * size
    next_midnight = _local_midnight(current.astimezone(zone).date() + timedelta(days=1), zone)
    while current < until:
        starts.append(current)
        if len(starts) > MAX_BUCKETS:
            break
        current = current + size
        if current >= next_midnight:
            current = next_midnight
            next_midnight = _local_midnight(current.astimezone(zone).date() + timedelta(days=1), zone)
    return starts


def _local_midnight(day: Any, zone: ZoneInfo) -> datetime:
    """The UTC instant the local `day` starts (the first existing instant when midnight is skipped)."""
    naive = datetime(day.year, day.month, day.day)
    aware = naive.replace(tzinfo=zone)
    # A skipped wall time does not round-trip; walk forward to the first real instant.
    for minutes in range(0, 181, 15):
        candidate = (naive + timedelta(minutes=minutes)).replace(tzinfo=zone)
        if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return candidate.astimezone(UTC)
    return aware.astimezone(UTC)


# ============================================================================= queries


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    topic: str
    bucket_start: datetime  # aware; in the requested time zone
    articles: int
    mean_sentiment: float | None
    negative_share: float | None
    positive_share: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket_start": self.bucket_start.isoformat().replace("+00:00", "Z"),
            "articles": self.articles,
            "mean_sentiment": self.mean_sentiment,
            "negative_share": self.negative_share,
            "positive_share": self.positive_share,
            "topic": self.topic,
        }


def history(
    engine: Engine | Connection,
    topics: Sequence[str],
    since: datetime,
    until: datetime,
    bucket: str = "1h",
    tz: str = "UTC",
    max_points: int | None = None,
) -> list[HistoryPoint]:
    """Per topic and bucket over [since, until): articles, mean sentiment, negative and positive shares.

    Topics are returned in the given order, buckets in time order, empty buckets with 0 articles and
    None means. Raises HistoryError (naming the parameter) for a bad range, bucket or time zone, and
    before any query when topics x buckets exceed `max_points` (the API's cap on one response).
    """
    zone = time_zone(tz)
    since, until = as_utc(since), as_utc(until)
    if until <= since:
        raise HistoryError("until", "until must be after since")
    topics = list(dict.fromkeys(topics))
    starts = bucket_grid(since, until, bucket, zone, len(topics), max_points)
    sums = {topic: [[0, 0.0, 0, 0] for _ in starts] for topic in topics}
    if topics and starts:
        if isinstance(engine, Connection):
            _accumulate(engine, topics, since, until, starts, sums)
        else:
            with engine.connect() as connection:
                _accumulate(connection, topics, since, until, starts, sums)
    points = []
    for topic in topics:
        for start, (n, total, negative, positive) in zip(starts, sums[topic], strict=True):
            points.append(
                HistoryPoint(
                    topic=topic,
                    bucket_start=start.astimezone(zone),
                    articles=n,
                    mean_sentiment=total / n if n else None,
                    negative_share=negative / n if n else None,
                    positive_share=positive / n if n else None,
                )
            )
    return points


def time_zone(tz: str) -> ZoneInfo:
    """The IANA zone `tz`, or HistoryError naming `tz`."""
    try:
        return ZoneInfo(tz)
    except (ValueError, KeyError, OSError):
        raise HistoryError(
            "tz", f"unknown time zone {tz!r} (an IANA name such as UTC or Europe/Berlin)"
        ) from None


def bucket_grid(
    since: datetime, until: datetime, bucket: str, zone: ZoneInfo, topics: int, max_points: int | None
) -> list[datetime]:
    """The bucket starts, refused (naming `bucket`) when the grid is larger than one answer may be."""
    starts = bucket_starts(since, until, bucket, zone)
    if len(starts) > MAX_BUCKETS:
        raise HistoryError(
            "bucket",
            f"the range needs more than {MAX_BUCKETS} {bucket} buckets per topic; use a larger bucket",
        )
    if max_points is not None and topics * len(starts) > max_points:
        raise HistoryError(
            "bucket",
            f"{topics} topic(s) x {len(starts)} {bucket} buckets = {topics * len(starts)} points, "
            f"more than the {max_points} one response may hold; use a larger bucket, a shorter range "
            "or fewer topics",
        )
    return starts


def _accumulate(
    connection: Connection,
    topics: list[str],
    since: datetime,
    until: datetime,
    starts: list[datetime],
    sums: dict[str, list[list[float]]],
) -> None:
    # Whole cells inside [since, until) come from the rollup; the partial edges from article_topics.
    first_whole = cell_start(since) if cell_start(since) == since else cell_start(since) + CELL
    last_whole = cell_start(until)  # exclusive
    starts_ts = [s.timestamp() for s in starts]

    def add(topic: str, at: datetime, n: int, total: float, negative: int, positive: int) -> None:
        index = bisect.bisect_right(starts_ts, as_utc(at).timestamp()) - 1
        cell = sums[topic][index]
        cell[0] += n
        cell[1] += total
        cell[2] += negative
        cell[3] += positive

    if first_whole < last_whole:
        rows = connection.execute(
            sa.select(
                _RU.c.topic,
                _RU.c.bucket_start,
                _RU.c.articles,
                _RU.c.sentiment_sum,
                _RU.c.negative,
                _RU.c.positive,
            ).where(
                _RU.c.topic.in_(topics), _RU.c.bucket_start >= first_whole, _RU.c.bucket_start < last_whole
            )
        )
        for topic, start, n, total, negative, positive in rows:
            add(topic, start, n, total, negative, positive)
        edges = [(since, first_whole), (last_whole, until)]
    else:
        edges = [(since, until)]
    # Partial cells at the edges: count the raw rows inside [lo, hi). Where retention already purged a
    # cell's articles (the rollup keeps more than article_topics has), the cell's rollup totals stand in.
    partial = sorted(
        {cell_start(lo) for lo, hi in edges if lo < hi}
        | {cell_start(hi - _EPS) for lo, hi in edges if lo < hi}
    )
    for cell in partial:
        lo, hi = max(cell, since), min(cell + CELL, until)
        raw = connection.execute(
            sa.select(_AT.c.topic, _AT.c.happened_at, _AT.c.sentiment, _AT.c.label).where(
                _AT.c.topic.in_(topics), _AT.c.happened_at >= cell, _AT.c.happened_at < cell + CELL
            )
        ).all()
        stored = {
            row[0]: row[1:]
            for row in connection.execute(
                sa.select(
                    _RU.c.topic, _RU.c.articles, _RU.c.sentiment_sum, _RU.c.negative, _RU.c.positive
                ).where(_RU.c.topic.in_(topics), _RU.c.bucket_start == cell)
            )
        }
        raw_counts: dict[str, int] = defaultdict(int)
        for row in raw:
            raw_counts[row[0]] += 1
        for topic in topics:
            if topic in stored and stored[topic][0] > raw_counts[topic]:
                add(topic, lo, *stored[topic])  # purged by retention: the whole cell's totals
                continue
            for row_topic, at, sentiment, label in raw:
                if row_topic == topic and lo <= as_utc(at) < hi:
                    add(topic, at, 1, sentiment, label == "negative", label == "positive")
