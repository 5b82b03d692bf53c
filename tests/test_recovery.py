"""Crash recovery in `monitor run`: what a killed pass stored but never scored is scored first, all of it,
before any rule is evaluated or any feed is polled, and the log says how many and how long it took.

Real pieces: the database (SQLite and PostgreSQL), the scheduler, the pipeline with the compact English
model, a local feed server. The pipeline subclass only notes, at each rule evaluation and feed poll, how
many stored articles were still unscored at that moment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import TOPICS, make_settings
from feedserver import FeedServer
from headlines import items, positive_run, rss
from seed import seed_unscored

from monitor.config import FeedConfig, ModelConfig, Settings
from monitor.pipeline import Pipeline
from monitor.scheduler import MonitorScheduler
from monitor.store.scores import articles_to_rescore
from monitor.timeutil import utcnow

BACKLOG = 240
RULE = {"name": "nvidia-drop", "topic": "nvidia", "metric": "mean_sentiment", "window": "6h", "below": -0.3,
        "min_articles": 5}  # fmt: skip


@pytest.fixture(scope="module")
def compact_classifier():  # noqa: ANN201 - monitor.classify.Classifier
    from monitor.classify import Classifier

    topics = Settings.model_validate({"topics": TOPICS}).topics
    return Classifier.from_config(ModelConfig(sentiment="compact-en", threads=1), topics)


def unscored(engine: sa.Engine) -> int:
    return len(articles_to_rescore(engine, only_missing=True, limit=1_000_000))


class ObservedPipeline(Pipeline):
    """The real pipeline; notes (what, unscored articles) at every rule evaluation and feed poll."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, int]] = []
        self.polled: list[str] = []

    def evaluate(self, now=None):  # noqa: ANN001, ANN201
        self.seen.append(("evaluate", unscored(self.engine)))
        return super().evaluate(now)

    def process_feed(self, feed: FeedConfig):  # noqa: ANN201
        self.seen.append((f"poll:{feed.name}", unscored(self.engine)))
        result = super().process_feed(feed)
        self.polled.append(feed.name)
        return result

    @property
    def evaluated(self) -> bool:
        return any(what == "evaluate" for what, _ in self.seen)


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_start_scores_the_whole_backlog_before_rules_and_polls(
    db_url: str,
    engine: sa.Engine,
    tmp_path: Path,
    compact_classifier: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_unscored(engine, BACKLOG)  # stored "just now" by a pass that was then killed
    assert unscored(engine) == BACKLOG
    with FeedServer() as server:
        url = server.route("/wire", body=rss(items("fresh", positive_run(5), utcnow(), timedelta(minutes=1))))
        settings = make_settings(
            tmp_path,
            database_url=db_url,
            feeds=[{"name": "fresh", "url": url, "every": "10m"}],
            alerts=[RULE],
            evaluate_every="1s",
            collect={"jitter": "0s"},
        )
        pipeline = ObservedPipeline(settings, engine, classifier=compact_classifier)
        scheduler = MonitorScheduler(settings, engine, pipeline)
        caplog.set_level(logging.INFO, logger="monitor.pipeline")
        scheduler.start()
        try:
            wait_until(lambda: "fresh" in pipeline.polled and pipeline.evaluated, timeout=300)
        finally:
            scheduler.shutdown()
    assert pipeline.seen and all(count == 0 for _, count in pipeline.seen), pipeline.seen[:5]
    assert unscored(engine) == 0
    reports = [r for r in caplog.records if r.getMessage() == "scored articles a previous run left unscored"]
    assert len(reports) == 1 and reports[0].articles == BACKLOG
    assert isinstance(reports[0].seconds, float) and reports[0].seconds > 0


def test_a_takeover_scores_the_backlog_before_evaluating(
    db_url: str, engine: sa.Engine, tmp_path: Path, compact_classifier: object
) -> None:
    """A standby leaves the leader's backlog alone; when the leader dies and it takes over, it recovers
    first."""
    seed_unscored(engine, BACKLOG // 4, feed="killed-leader")
    settings = make_settings(tmp_path, database_url=db_url, alerts=[RULE], evaluate_every="1s")
    pipeline = ObservedPipeline(settings, engine, classifier=compact_classifier)
    leader = threading.Event()
    scheduler = MonitorScheduler(settings, engine, pipeline, is_leader=leader.is_set)
    scheduler.start()
    try:
        time.sleep(1.5)
        assert pipeline.seen == [] and unscored(engine) == BACKLOG // 4  # a standby does nothing
        leader.set()
        scheduler.on_leadership(True)
        wait_until(lambda: pipeline.evaluated, timeout=300)
    finally:
        scheduler.shutdown()
    assert all(count == 0 for _, count in pipeline.seen), pipeline.seen[:5]


@pytest.mark.slow
def test_collect_scores_the_whole_backlog_before_rules(
    sqlite_engine: sa.Engine, tmp_path: Path, compact_classifier: object
) -> None:
    """`monitor collect` after a crash: more than one page of 1,000 unscored articles, all scored first."""
    seed_unscored(sqlite_engine, 1_100)
    settings = make_settings(tmp_path, alerts=[RULE])
    pipeline = ObservedPipeline(settings, sqlite_engine, classifier=compact_classifier)
    report = pipeline.run_pass()
    assert report.scored == 1_100 and pipeline.seen == [("evaluate", 0)]
