"""The whole path with the real model: feed server -> collect -> score -> rule -> outbox -> Slack stand-in.

A negative run of real headlines fires exactly one Slack message, through a 429; a pass with nothing new
and a restarted process add nothing; a positive run resolves it with an edited message and a thread reply.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import make_settings
from feedserver import FeedServer
from headlines import items, negative_run, positive_run, rss
from slackserver import DEFAULT_TOKEN, SlackServer
from sqlmodel import Session

from monitor.events import AlertFired, AlertResolved
from monitor.pipeline import Pipeline
from monitor.store.tables import Alert, Notification
from monitor.timeutil import utcnow

pytestmark = pytest.mark.slow

RULE = {
    "name": "nvidia-sentiment-drop",
    "topic": "nvidia",
    "metric": "mean_sentiment",
    "window": "6h",
    "below": -0.3,
    "clear": -0.1,
    "min_articles": 5,
    "for": "0s",
    "repeat": "6h",
    "severity": "critical",
}


def test_negative_run_fires_once_through_a_429_and_a_positive_run_resolves(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer, classifier
) -> None:
    now = utcnow()
    with FeedServer() as feeds:
        negatives = items("neg", negative_run(8), now - timedelta(minutes=5), timedelta(minutes=3))
        url = feeds.route("/chips.xml", body=rss(negatives))
        settings = make_settings(
            tmp_path,
            feeds=[{"name": "chip-wire", "url": url, "every": "10m"}],
            alerts=[RULE],
            slack={"bot_token": DEFAULT_TOKEN, "channel": "C0ALERTS1", "api_url": slack_server.api_url},
            notify={"timeout": "2s", "collect_wait": "10s"},
        )
        slack_server.fail("chat.postMessage", status=429, retry_after="1")

        report = Pipeline(settings, engine, classifier=classifier).run_pass()
        assert report.new_articles == 8 and report.scored == 8
        assert [type(e) for e in report.alert_events] == [AlertFired]
        assert report.delivered == 1 and report.failed_deliveries == 0
        assert len(slack_server.calls("chat.postMessage")) == 2  # the 429, then the post
        [post] = slack_server.top_level()
        assert "nvidia-sentiment-drop" in post.text and "Nvidia" in str(post.blocks)

        # Nothing new, and a restarted process: no second message.
        assert Pipeline(settings, engine, classifier=classifier).run_pass().alert_events == []
        assert Pipeline(settings, engine, classifier=classifier).run_pass().delivered == 0
        assert len(slack_server.posts()) == 1

        # The story turns: a positive run in the same window.
        positives = items("pos", positive_run(40), now, timedelta(seconds=20))
        feeds.route("/chips.xml", body=rss(positives + negatives))
        report = Pipeline(settings, engine, classifier=classifier).run_pass()
        assert report.new_articles == 40
        assert [type(e) for e in report.alert_events] == [AlertResolved]
        assert report.delivered == 1
    assert len(slack_server.calls("chat.update")) == 1
    assert slack_server.top_level()[0].blocks[0]["text"]["text"].startswith("✅ RESOLVED")
    [reply] = slack_server.replies(post.ts)
    assert "RESOLVED" in reply.blocks[0]["text"]["text"]
    with Session(engine) as session:
        statuses = session.execute(sa.select(Notification.kind, Notification.status)).all()
        alert = session.execute(sa.select(Alert)).scalars().one()
    assert sorted(statuses) == [("fired", "delivered"), ("resolved", "delivered")]
    assert alert.state == "resolved" and alert.message_id == post.ts


def test_a_scheduled_feed_job_posts_its_transition_at_once(
    sqlite_engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer, classifier
) -> None:
    """`monitor run` polls each feed with `process_feed`: a transition goes out without waiting for the
    next delivery tick."""
    now = utcnow()
    with FeedServer() as feeds:
        url = feeds.route("/chips.xml", body=rss(items("neg", negative_run(6), now, timedelta(minutes=2))))
        settings = make_settings(
            tmp_path,
            feeds=[{"name": "chip-wire", "url": url}],
            alerts=[RULE],
            slack={"bot_token": DEFAULT_TOKEN, "channel": "C0ALERTS1", "api_url": slack_server.api_url},
        )
        pipeline = Pipeline(settings, sqlite_engine, classifier=classifier)
        result, scored = pipeline.process_feed(settings.feeds[0])
    assert result.new == 6 and scored == 6
    assert len(slack_server.top_level()) == 1
