"""Two real `monitor run` replicas on one PostgreSQL: exactly one leads (singleton jobs: rules, delivery); the
other takes over on kill -9. Feed polls are claimed from the database by both (monitor/store/feeds.py).

Which replica polled a feed is told by its User-Agent (each replica's config names itself); Slack delivery is
checked on the local Slack stand-in: the alert that fires is posted exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.store.db import create_db_engine
from monitor.store.tables import Article, Notification
from tests.conftest import drop_pg_database, make_pg_database
from tests.feedserver import FeedServer
from tests.procs import MonitorProcess, free_port, leader_state, wait_for, write_config
from tests.slackserver import DEFAULT_TOKEN, SlackServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TAKEOVER_LIMIT = 60.0  # the contract: a standby takes over within a minute


def _feed_xml(items: int) -> bytes:
    entries = "".join(
        f"<item><title>Nvidia headline {i}: shares slide as TPU competition grows</title>"
        f"<link>https://news.example.com/nvidia/{i}</link><guid>nvidia-{i}</guid>"
        f"<pubDate>Tue, 25 Nov 2025 {10 + i // 60:02d}:{i % 60:02d}:00 GMT</pubDate>"
        f"<description>Nvidia stock fell {i}% in a slump.</description></item>"
        for i in range(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>wire</title>'
        f"<link>https://news.example.com/</link><description>wire</description>{entries}</channel></rss>"
    ).encode()


def _agents(server: FeedServer) -> list[str]:
    return [headers.get("user-agent", "") for headers in server.requests_for("/wire.xml")]


@pytest.fixture
def pg_url(pg_server):
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    url = make_pg_database("monitor_replicas")
    yield url
    drop_pg_database(url)


def test_two_replicas_one_leader_and_takeover_after_kill9(pg_url: str, tmp_path: Path):
    with FeedServer() as feeds, SlackServer() as slack:
        feeds.route("/wire.xml", body=_feed_xml(12), content_type="application/rss+xml")
        common = {
            "feeds": [{"name": "wire", "url": feeds.url("/wire.xml"), "every": "3s"}],
            "alerts": [
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
            "evaluate_every": "2s",
            "notify": {"deliver_every": "1s"},
        }
        env = {"SLACK_BOT_TOKEN": DEFAULT_TOKEN, "SLACK_CHANNEL": "C0ALERTS1", "SLACK_API_URL": slack.api_url}
        ports = {"a": free_port(), "b": free_port()}
        procs: dict[str, MonitorProcess] = {}
        try:
            for name in ("a", "b"):
                config = write_config(
                    tmp_path / f"{name}.yaml",
                    pg_url,
                    **common,
                    collect={"user_agent": f"replica-{name}", "jitter": "0s"},
                    http={"port": ports[name]},
                )
                procs[name] = MonitorProcess(["run"], config, tmp_path / f"{name}.log", env=env)
                if name == "a":  # a first, so the roles are known
                    wait_for(lambda: leader_state(ports["a"]) is True, 120, what="a leads")
            wait_for(lambda: leader_state(ports["b"]) is False, 120, what="b stands by")

            # Feeds are claimed from the database by every replica (issue 14): either may poll, one at a time.
            wait_for(lambda: len(_agents(feeds)) >= 3, 60, what="the feed is polled")
            wait_for(lambda: len(slack.top_level()) >= 1, 60, what="the alert reaches Slack")

            # kill -9 the leader: b takes over within the limit and polls from then on.
            procs["a"].kill9()
            killed_at = time.monotonic()
            wait_for(lambda: leader_state(ports["b"]) is True, TAKEOVER_LIMIT, 0.1, what="b takes over")
            takeover = time.monotonic() - killed_at
            wait_for(lambda: "replica-b" in _agents(feeds), 30, what="b polls after the takeover")
            time.sleep(4)  # b evaluates and delivers a few rounds as the leader

            code, seconds = procs["b"].terminate()
            assert code == 0 and seconds < 10
        finally:
            for proc in procs.values():
                proc.close()

        engine = create_db_engine(pg_url)
        try:
            with engine.connect() as connection:
                articles = connection.execute(
                    sa.select(sa.func.count()).select_from(Article.__table__)
                ).scalar()
                statuses = connection.execute(sa.select(Notification.__table__.c.status)).scalars().all()
        finally:
            engine.dispose()
        assert articles == 12  # polled by both replicas over time, stored once
        assert statuses == ["delivered"]
        assert len(slack.top_level()) == 1, [m.text for m in slack.posts()]  # one alert, posted once
        assert takeover < TAKEOVER_LIMIT
        print(f"takeover after kill -9: {takeover:.1f}s")
