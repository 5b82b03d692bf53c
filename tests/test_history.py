"""History queries: rollup maintenance and bucket arithmetic against the stored rows, on both databases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from seed import SeedArticle, label_of, seed

from monitor.store.history import (
    ArticleTopics,
    HistoryError,
    TopicRow,
    bucket_starts,
    forget_articles,
    history,
    refresh_rollup,
    replace_article_topics,
)
from monitor.store.tables import ArticleTopic, TopicRollup

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _expected(rows, topic, since, until, starts):
    """Brute force from the raw rows: what each bucket must report."""
    out = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else until
        sel = [r for r in rows if r[0] == topic and max(start, since) <= r[1] < min(end, until)]
        n = len(sel)
        out.append(
            (
                n,
                sum(r[2] for r in sel) / n if n else None,
                sum(label_of(r[2]) == "negative" for r in sel) / n if n else None,
                sum(label_of(r[2]) == "positive" for r in sel) / n if n else None,
            )
        )
    return out


def _random_articles(count: int, seed_value: int = 7) -> list[SeedArticle]:
    rnd = random.Random(seed_value)
    articles = []
    for i in range(count):
        at = T0 + timedelta(seconds=rnd.randrange(0, 3 * 86400))
        topics = {
            t: round(rnd.uniform(-1, 1), 3)
            for t in rnd.sample(["nvidia", "tpu", "ai_bubble"], rnd.randint(1, 2))
        }
        articles.append(SeedArticle(title=f"headline {i}", at=at, topics=topics))
    return articles


def _rows(articles):
    return [(t, a.at, s) for a in articles for t, s in a.topics.items()]


def _rollup(engine):
    with engine.connect() as c:
        return sorted(tuple(r) for r in c.execute(sa.select(TopicRollup.__table__)).all())


def _check(points, expected):
    assert [p.articles for p in points] == [e[0] for e in expected]
    for p, e in zip(points, expected, strict=True):
        for got, want in zip((p.mean_sentiment, p.negative_share, p.positive_share), e[1:], strict=True):
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-9)


def test_history_matches_raw_rows_with_unaligned_edges(engine):
    articles = _random_articles(400)
    seed(engine, articles)
    rows = _rows(articles)
    since = T0 + timedelta(hours=5, minutes=7, seconds=13)  # not on a cell boundary
    until = T0 + timedelta(days=2, hours=3, minutes=52)
    for bucket in ("15m", "1h", "6h", "1d"):
        points = history(engine, ["nvidia", "tpu"], since, until, bucket)
        starts = bucket_starts(since, until, bucket)
        assert starts[0] <= since < (starts[1] if len(starts) > 1 else until + timedelta(days=1))
        for topic in ("nvidia", "tpu"):
            got = [p for p in points if p.topic == topic]
            assert [p.bucket_start for p in got] == starts
            _check(got, _expected(rows, topic, since, until, starts))
    # The rollup equals a recomputation from article_topics.
    before = _rollup(engine)
    with engine.begin() as c:
        refresh_rollup(c)
    _same_rollup(before, _rollup(engine))


def _same_rollup(a, b):
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in a] == [(r[0], r[1], r[2], r[4], r[5]) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x[3] == pytest.approx(y[3], abs=1e-9)
    return True


def test_empty_buckets_present_with_null_means(engine):
    seed(engine, [SeedArticle("Nvidia rallies", T0 + timedelta(minutes=30), {"nvidia": 0.8})])
    points = history(engine, ["nvidia", "custom_chips"], T0, T0 + timedelta(hours=3), "1h")
    assert [(p.topic, p.articles) for p in points] == [
        ("nvidia", 1),
        ("nvidia", 0),
        ("nvidia", 0),
        ("custom_chips", 0),
        ("custom_chips", 0),
        ("custom_chips", 0),
    ]
    assert points[0].mean_sentiment == pytest.approx(0.8)
    assert points[0].positive_share == 1.0 and points[0].negative_share == 0.0
    assert points[1].mean_sentiment is None and points[1].negative_share is None
    assert set(points[0].as_dict()) == {
        "bucket_start",
        "articles",
        "mean_sentiment",
        "negative_share",
        "positive_share",
        "topic",
    }
    assert points[0].as_dict()["bucket_start"] == "2025-03-01T00:00:00Z"


def test_rescore_and_retention_keep_rollup_exact(engine):
    ids = seed(engine, _random_articles(120, seed_value=3))
    # Rescore a third of the articles: new sentiment, a moved timestamp, a dropped topic.
    items = []
    for article_id in ids[::3]:
        items.append(
            ArticleTopics(
                article_id, T0 + timedelta(hours=article_id % 50), [TopicRow("nvidia", 0.7, -0.9, "negative")]
            )
        )
    items.append(ArticleTopics(ids[1], T0, []))
    with engine.begin() as c:
        replace_article_topics(c, items)
    with engine.begin() as c:
        forget_articles(c, ids[2::3])
    incremental = _rollup(engine)
    with engine.begin() as c:
        refresh_rollup(c)
    _same_rollup(incremental, _rollup(engine))
    # And history agrees with the remaining raw rows.
    with engine.connect() as c:
        raw = [
            (t, at, s)
            for t, at, s in c.execute(
                sa.select(
                    ArticleTopic.__table__.c.topic,
                    ArticleTopic.__table__.c.happened_at,
                    ArticleTopic.__table__.c.sentiment,
                )
            )
        ]
    since, until = T0, T0 + timedelta(days=3)
    starts = bucket_starts(since, until, "1h")
    _check(history(engine, ["nvidia"], since, until, "1h"), _expected(raw, "nvidia", since, until, starts))


def test_refresh_rollup_range_only_touches_that_range(engine):
    seed(engine, _random_articles(80, seed_value=11))
    before = _rollup(engine)
    with engine.begin() as c:
        c.execute(sa.delete(TopicRollup.__table__))  # simulate a lost rollup
        refresh_rollup(c, since=T0, until=T0 + timedelta(days=1, minutes=7))
        refresh_rollup(c, since=T0 + timedelta(days=1, minutes=7), until=T0 + timedelta(days=4), topics=None)
    _same_rollup(before, _rollup(engine))


def test_berlin_days_and_dst():
    # 2025-03-30: Berlin switches to summer time; that day is 23 hours long.
    since = datetime(2025, 3, 29, 12, tzinfo=UTC)
    until = datetime(2025, 4, 1, tzinfo=UTC)
    starts = bucket_starts(since, until, "1d", "Europe/Berlin")
    assert starts == [
        datetime(2025, 3, 28, 23, tzinfo=UTC),  # 29 March 00:00 CET
        datetime(2025, 3, 29, 23, tzinfo=UTC),  # 30 March 00:00 CET
        datetime(2025, 3, 30, 22, tzinfo=UTC),  # 31 March 00:00 CEST
        datetime(2025, 3, 31, 22, tzinfo=UTC),
    ]
    hours = bucket_starts(
        datetime(2025, 3, 30, 0, tzinfo=UTC), datetime(2025, 3, 30, 3, tzinfo=UTC), "1h", "Europe/Berlin"
    )
    assert [h.hour for h in hours] == [0, 1, 2]
    # Kolkata is UTC+05:30: hourly buckets start at half past the UTC hour.
    india = bucket_starts(
        datetime(2025, 3, 1, 10, 10, tzinfo=UTC), datetime(2025, 3, 1, 12, tzinfo=UTC), "1h", "Asia/Kolkata"
    )
    assert [(h.hour, h.minute) for h in india] == [(9, 30), (10, 30), (11, 30)]


def test_history_in_time_zone_returns_local_offsets(engine):
    seed(engine, [SeedArticle("TPU news", datetime(2025, 3, 29, 23, 30, tzinfo=UTC), {"tpu": 0.5})])
    points = history(
        engine,
        ["tpu"],
        datetime(2025, 3, 29, tzinfo=UTC),
        datetime(2025, 3, 31, tzinfo=UTC),
        "1d",
        "Europe/Berlin",
    )
    assert [p.as_dict()["bucket_start"] for p in points] == [
        "2025-03-29T00:00:00+01:00",
        "2025-03-30T00:00:00+01:00",
        "2025-03-31T00:00:00+02:00",
    ]
    assert [p.articles for p in points] == [0, 1, 0]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"bucket": "7m"}, "bucket"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"until": T0 - timedelta(days=1)}, "until"),
        ({"since": T0 - timedelta(days=400), "bucket": "15m"}, "bucket"),
    ],
)
def test_bad_history_requests_name_the_parameter(sqlite_engine, kwargs, param):
    args = {"topics": ["nvidia"], "since": T0, "until": T0 + timedelta(days=1), "bucket": "1h", "tz": "UTC"}
    args.update(kwargs)
    with pytest.raises(HistoryError) as info:
        history(sqlite_engine, **args)
    assert info.value.param == param


def test_history_survives_retention(engine):
    from monitor.store.history import retire_articles

    articles = [
        SeedArticle("old a", T0 + timedelta(minutes=5), {"nvidia": -0.5}),
        SeedArticle("old b", T0 + timedelta(minutes=20), {"nvidia": 0.5}),
        SeedArticle("old c", T0 + timedelta(hours=2), {"nvidia": 0.9}),
        SeedArticle("kept", T0 + timedelta(days=1), {"nvidia": -0.1}),
    ]
    ids = seed(engine, articles)
    before = history(engine, ["nvidia"], T0, T0 + timedelta(days=2), "1d")
    with engine.begin() as c:
        assert retire_articles(c, ids[:3]) == 3
    after = history(engine, ["nvidia"], T0, T0 + timedelta(days=2), "1d")
    assert after == before
    assert [p.articles for p in after] == [3, 1]
    # An edge inside a purged cell: the whole cell's totals stand in (nothing finer is left).
    edge = history(engine, ["nvidia"], T0 + timedelta(minutes=7), T0 + timedelta(hours=1), "1h")
    assert [p.articles for p in edge] == [2]
