"""Restart safety with real processes: kill -9 in the middle of a collect pass and of a Slack delivery.

After a restart: no duplicate articles, every article scored, no lost and no doubled notification. The Slack
token used here is also checked never to appear in a log line (JSON logs at DEBUG, the most verbose).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.store.db import create_db_engine
from monitor.store.tables import Article, ArticleScore, Notification
from monitor.timeutil import utcnow
from tests.conftest import drop_pg_database, make_pg_database
from tests.feedserver import FeedServer
from tests.procs import MonitorProcess, wait_for, write_config
from tests.slackserver import SlackServer

pytestmark = pytest.mark.slow

FAKE_TOKEN = (
    "T0KEN-restart-test-9f8e7d6c5b4a"  # not xox-shaped: only the registered-secret redaction hides it
)


def _feed_xml(prefix: str, items: int) -> bytes:
    entries = "".join(
        f"<item><title>{prefix} {i}: Nvidia shares slide as Google TPU deals pile up</title>"
        f"<link>https://news.example.com/{prefix}/{i}</link><guid>{prefix}-{i}</guid>"
        f"<pubDate>Tue, 25 Nov 2025 09:{i % 60:02d}:00 GMT</pubDate>"
        f"<description>Story {i} about Nvidia and TPUs.</description></item>"
        for i in range(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://news.example.com/</link><description>t</description>{entries}</channel></rss>"
    ).encode()


def _counts(url: str) -> dict[str, int]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            a = Article.__table__
            return {
                "articles": connection.execute(sa.select(sa.func.count()).select_from(a)).scalar_one(),
                "distinct_guids": connection.execute(
                    sa.select(sa.func.count(sa.distinct(a.c.guid))).select_from(a)
                ).scalar_one(),
                "scored": connection.execute(
                    sa.select(sa.func.count()).select_from(ArticleScore.__table__)
                ).scalar_one(),
            }
    finally:
        engine.dispose()


def _stored(url: str) -> int:
    """Articles stored so far (0 while the process has not created the schema yet)."""
    try:
        return _counts(url)["articles"]
    except sa.exc.DBAPIError:
        return 0


def test_kill9_during_collect_pass_then_restart(db_url: str, tmp_path: Path):
    """Killed while one feed hangs (the other feed's articles stored, not yet scored): the rerun stores
    nothing twice and scores what the killed pass left unscored."""
    with FeedServer() as feeds:
        feeds.route("/fast.xml", body=_feed_xml("fast", 25), content_type="application/rss+xml")
        feeds.route("/slow.xml", hang=True)
        config = write_config(
            tmp_path / "monitor.yaml",
            db_url,
            feeds=[
                {"name": "fast", "url": feeds.url("/fast.xml")},
                {"name": "slow", "url": feeds.url("/slow.xml")},
            ],
            collect={"read_timeout": "60s", "total_timeout": "90s"},
        )
        first = MonitorProcess(["collect"], config, tmp_path / "first.log")
        try:
            wait_for(lambda: _stored(db_url) >= 25, 120, what="the fast feed's articles stored")
            assert first.alive(), first.output()[-2000:]
            first.kill9()
        finally:
            first.close()
        assert _counts(db_url)["scored"] < 25  # the pass really was cut short

        feeds.route("/slow.xml", body=_feed_xml("slow", 5), content_type="application/rss+xml")
        second = MonitorProcess(["collect"], config, tmp_path / "second.log")
        assert second.wait(180) == 0, second.output()[-3000:]

    counts = _counts(db_url)
    assert counts["articles"] == 30  # 25 + 5, nothing stored twice
    assert counts["distinct_guids"] == 30
    assert counts["scored"] == 30  # the articles of the killed pass were scored on the rerun


@pytest.fixture(
    params=[
        pytest.param(("postgresql", True), marks=pytest.mark.postgres, id="postgresql-answer-lost"),
        pytest.param(("sqlite", False), id="sqlite-not-posted"),
    ]
)
def delivery_case(request: pytest.FixtureRequest, tmp_path: Path, pg_server: str | None):
    """(database URL, whether Slack took the message before the kill): each case on one database, to keep
    the suite short (both databases share the outbox code; the collect test above runs on both)."""
    kind, posted = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}", posted
        return
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    url = make_pg_database("monitor_restart")
    try:
        yield url, posted
    finally:
        drop_pg_database(url)


def test_kill9_during_slack_delivery_then_restart(delivery_case: tuple[str, bool], tmp_path: Path):
    """Killed while Slack has (or has not) taken the message but not answered: after the restart the alert
    is posted exactly once - neither lost nor doubled."""
    db_url, posted = delivery_case
    with FeedServer() as feeds, SlackServer(token=FAKE_TOKEN) as slack:
        feeds.route("/wire.xml", body=_feed_xml("wire", 6), content_type="application/rss+xml")
        slack.fail("chat.postMessage", hang=120, apply=posted)
        config = write_config(
            tmp_path / "monitor.yaml",
            db_url,
            feeds=[{"name": "wire", "url": feeds.url("/wire.xml")}],
            alerts=[
                {
                    "name": "nvidia-volume",
                    "topic": "nvidia",
                    "metric": "volume",
                    "window": "3650d",
                    "above": 0,
                    "min_articles": 1,
                    "for": "0s",
                }
            ],
            notify={"timeout": "60s"},
            log_level="DEBUG",
        )
        # A channel ID (not a name): the restarted delivery can then search the channel for the lost post.
        env = {"SLACK_BOT_TOKEN": FAKE_TOKEN, "SLACK_CHANNEL": "C0ALERTS1", "SLACK_API_URL": slack.api_url}
        first = MonitorProcess(["collect"], config, tmp_path / "first.log", env=env)
        try:
            wait_for(lambda: slack.calls("chat.postMessage"), 120, what="the delivery reaches Slack")
            assert first.alive()
            first.kill9()
        finally:
            first.close()
        assert len(slack.top_level()) == (1 if posted else 0)

        # The killed process held the row's claim; let the claim expire instead of waiting its lease out.
        engine = create_db_engine(db_url)
        try:
            with engine.begin() as connection:
                rows = connection.execute(
                    sa.update(Notification.__table__)
                    .where(Notification.__table__.c.status == "sending")
                    .values(next_attempt_at=utcnow() - timedelta(seconds=1))
                ).rowcount
            assert rows == 1
        finally:
            engine.dispose()

        second = MonitorProcess(["collect"], config, tmp_path / "second.log", env=env)
        assert second.wait(180) == 0, second.output()[-3000:]

        assert len(slack.top_level()) == 1, [m.text for m in slack.posts()]
        engine = create_db_engine(db_url)
        try:
            with engine.connect() as connection:
                statuses = connection.execute(sa.select(Notification.__table__.c.status)).scalars().all()
        finally:
            engine.dispose()
        assert statuses == ["delivered"]

        # Structured logs: identifiers present, the token never.
        for proc in (first, second):
            assert FAKE_TOKEN not in proc.output()
        records = second.log_records() + first.log_records()
        assert records, "no JSON log lines"
        assert any(r.get("feed") == "wire" for r in records)
        assert any("article_id" in r for r in records)
        assert any(r.get("rule") == "nvidia-volume" or "fingerprint" in r for r in records)
        assert all(FAKE_TOKEN not in json.dumps(r) for r in records)
