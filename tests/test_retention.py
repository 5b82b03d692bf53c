"""Retention: old articles go, their history aggregates and all alerts stay (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from monitor.store.history import cell_start, history
from monitor.store.retention import cutoff_for, oldest_retained, purge_articles, run_retention
from monitor.store.tables import Alert, AlertEvent, Article, ArticleScore, ArticleTopic, TopicRollup
from tests.conftest import make_settings
from tests.seed import SeedArticle, seed

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOPICS = ["nvidia", "tpu", "custom_chips", "ai_bubble"]


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _totals(engine: sa.Engine) -> dict[str, tuple[int, float]]:
    """Articles and summed sentiment per topic over the whole year, from the history query."""
    points = history(engine, TOPICS, NOW - timedelta(days=365), NOW + timedelta(hours=1), bucket="1d")
    out: dict[str, tuple[int, float]] = {}
    for point in points:
        n, total = out.get(point.topic, (0, 0.0))
        out[point.topic] = (n + point.articles, total + (point.mean_sentiment or 0.0) * point.articles)
    return {topic: (n, round(total, 6)) for topic, (n, total) in out.items()}


def _seed_alert(engine: sa.Engine, at: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Alert.__table__).values(
                fingerprint="f" * 64,
                rule="nvidia-drop",
                topic="nvidia",
                state="resolved",
                value=-0.5,
                threshold=-0.3,
                article_count=6,
                fired_at=at,
                resolved_at=at + timedelta(hours=2),
            )
        )
        connection.execute(
            sa.insert(AlertEvent.__table__).values(
                fingerprint="f" * 64,
                rule="nvidia-drop",
                topic="nvidia",
                kind="fired",
                value=-0.5,
                threshold=-0.3,
                article_count=6,
                at=at,
            )
        )


def test_retention_deletes_old_articles_and_keeps_history_and_alerts(engine, tmp_path):
    old = NOW - timedelta(days=200)
    recent = NOW - timedelta(days=1)
    seed(
        engine,
        [
            SeedArticle("Nvidia slides on TPU fears", old, {"nvidia": -0.7, "tpu": 0.5}),
            SeedArticle("AI bubble warnings grow", old + timedelta(hours=3), {"ai_bubble": -0.4}),
            SeedArticle("Trainium wins a customer", old + timedelta(days=1), {"custom_chips": 0.6}),
            SeedArticle("Nvidia record revenue", recent, {"nvidia": 0.8}),
            SeedArticle("TPU v8 announced", recent + timedelta(hours=1), {"tpu": 0.4}),
        ],
    )
    _seed_alert(engine, old)
    before = _totals(engine)
    rollup_before = _count(engine, TopicRollup.__table__)
    assert before["nvidia"][0] == 2

    settings = make_settings(tmp_path, retention={"articles": "180d"})
    report = run_retention(engine, settings, now=NOW)

    assert report.articles == 3
    assert report.topic_rows == 4
    assert report.cutoff == cell_start(NOW - timedelta(days=180))
    assert _count(engine, Article.__table__) == 2
    assert _count(engine, ArticleScore.__table__) == 2
    assert _count(engine, ArticleTopic.__table__) == 2
    # The aggregates of the purged period are still there, so history is unchanged.
    assert _count(engine, TopicRollup.__table__) == rollup_before
    assert _totals(engine) == before
    # Alerts and their history are never touched.
    assert _count(engine, Alert.__table__) == 1
    assert _count(engine, AlertEvent.__table__) == 1
    assert oldest_retained(engine) == recent

    # A second run finds nothing more to do.
    assert run_retention(engine, settings, now=NOW).articles == 0


def test_recently_collected_old_article_is_kept(engine, tmp_path):
    """An old story collected just now stays (else a feed still listing it would re-add it every pass)."""
    old = NOW - timedelta(days=400)
    (article_id,) = seed(engine, [SeedArticle("Dot-com comparisons, again", old, {"ai_bubble": -0.3})])
    with engine.begin() as connection:
        connection.execute(
            sa.update(Article.__table__).where(Article.__table__.c.id == article_id).values(collected_at=NOW)
        )
    report = run_retention(engine, make_settings(tmp_path, retention={"articles": "30d"}), now=NOW)
    assert report.articles == 0
    assert _count(engine, Article.__table__) == 1


def test_retention_off_keeps_everything(engine, tmp_path):
    seed(engine, [SeedArticle("Nvidia in 2020", NOW - timedelta(days=2000), {"nvidia": 0.1})])
    settings = make_settings(tmp_path, retention={"articles": None})
    assert cutoff_for(settings, NOW) is None
    report = run_retention(engine, settings, now=NOW)
    assert report.cutoff is None and report.articles == 0
    assert _count(engine, Article.__table__) == 1


def test_purge_runs_in_batches(sqlite_engine):
    base = NOW - timedelta(days=300)
    seed(
        sqlite_engine,
        [SeedArticle(f"Nvidia story {i}", base + timedelta(minutes=i), {"nvidia": 0.1}) for i in range(7)],
    )
    report = purge_articles(sqlite_engine, NOW - timedelta(days=100), batch_size=3)
    assert report.articles == 7
    assert report.batches == 3
    assert _count(sqlite_engine, Article.__table__) == 0
    assert _totals(sqlite_engine)["nvidia"][0] == 7
