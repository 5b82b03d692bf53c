"""Beyond one machine, for real: RabbitMQ and PostgreSQL on 127.0.0.1, never mocked.

Two `monitor run` schedulers and two `monitor worker` processes share one PostgreSQL database and one broker;
locally served feeds. Every entry is stored once and scored once, the alert is delivered once, and a worker
killed with SIGKILL in the middle of scoring loses nothing (its unacknowledged messages go to the other).

Skipped when the broker does not answer, unless MONITOR_REQUIRE_BROKER=1 (then that is a failure), as
PostgreSQL tests are with MONITOR_REQUIRE_POSTGRES (tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from monitor.events import ArticleCollected, ArticleScored, TopicScore, from_message, to_message
from monitor.store.db import create_db_engine
from monitor.store.feeds import claim_due_feeds, ensure_feeds
from monitor.store.migrate import upgrade
from tests.conftest import drop_pg_database, make_pg_database
from tests.feedserver import FeedServer
from tests.procs import MonitorProcess, free_port, get_json, wait_for, write_config
from tests.slackserver import DEFAULT_TOKEN, SlackServer

BROKER_URL = os.environ.get("MONITOR_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REQUIRE_BROKER = os.environ.get("MONITOR_REQUIRE_BROKER") == "1"

FEEDS = 30
ENTRIES = 10
SHARED = 2  # entries every feed carries (the same links): stored once


def _broker_reachable() -> str | None:
    parts = urlsplit(BROKER_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return None
    except OSError as exc:
        return str(exc)


@pytest.fixture(scope="module")
def broker_url() -> str:
    problem = _broker_reachable()
    if problem is not None:
        if REQUIRE_BROKER:
            pytest.fail(f"RabbitMQ is required (MONITOR_REQUIRE_BROKER=1) but unreachable: {problem}")
        pytest.skip(f"RabbitMQ not reachable at {BROKER_URL} (set MONITOR_REQUIRE_BROKER=1 to fail instead)")
    return BROKER_URL


@pytest.fixture
def pg_url(pg_server):  # noqa: ANN001, ANN201
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    url = make_pg_database("monitor_scale")
    yield url
    drop_pg_database(url)


def _feed_xml(feed: int) -> bytes:
    items = [
        (f"s{feed}-{i}", f"Nvidia supplier {feed}-{i} ships {i + feed * 7} racks as TPU rivalry grows")
        for i in range(ENTRIES)
    ] + [(f"shared-{j}", f"Shared wire story {j}: Nvidia slides on AI bubble fears") for j in range(SHARED)]
    entries = "".join(
        f"<item><title>{title}</title><link>https://news.example.com/{key}</link><guid>{key}</guid>"
        f"<pubDate>Tue, 25 Nov 2025 10:{feed % 60:02d}:00 GMT</pubDate>"
        f"<description>{title}. Analysts discuss item {key}.</description></item>"
        for key, title in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>wire</title>'
        f"<link>https://news.example.com/</link><description>wire</description>{entries}</channel></rss>"
    ).encode()


def test_events_travel_as_messages_and_back() -> None:
    at = datetime(2025, 11, 25, 10, 0, tzinfo=UTC)
    for event in (
        ArticleCollected(7, "wire", "Nvidia 英伟达", "text", None, "zh", at, is_update=True),
        ArticleScored(7, "negative", -0.5, 0.9, "m@1", (TopicScore("nvidia", 0.9, -0.6),)),
    ):
        import json

        assert from_message(json.loads(json.dumps(to_message(event)))) == event


def test_claims_split_due_feeds_and_hold_them(pg_url: str) -> None:
    """Two claimers at once never get the same feed; a claimed feed is not due again until its lease ends."""
    engine = create_db_engine(pg_url)
    upgrade(engine)
    now = datetime.now(UTC)
    names = [f"f{i}" for i in range(20)]
    ensure_feeds(engine, [(name, f"http://127.0.0.1/{name}") for name in names], now)
    leases = dict.fromkeys(names, timedelta(minutes=10))
    with engine.connect() as blocker:  # another replica mid-claim: holds 5 rows locked
        transaction = blocker.begin()
        locked = (
            blocker.execute(sa.text("SELECT name FROM feeds ORDER BY id LIMIT 5 FOR UPDATE")).scalars().all()
        )
        first = [name for name, _ in claim_due_feeds(engine, leases, now, limit=100)]
        transaction.rollback()
    assert not set(first) & set(locked)  # skipped, not waited for
    assert len(first) == 15
    second = [name for name, _ in claim_due_feeds(engine, leases, now, limit=100)]
    assert sorted(second) == sorted(locked)
    assert claim_due_feeds(engine, leases, now + timedelta(minutes=9), limit=100) == []
    assert len(claim_due_feeds(engine, leases, now + timedelta(minutes=11), limit=100)) == 20
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_schedulers_two_workers_kill9_loses_nothing(pg_url: str, broker_url: str, tmp_path: Path) -> None:
    from monitor.queue import TaskQueue

    prefix = f"test-{uuid.uuid4().hex[:8]}."
    with FeedServer() as server, SlackServer() as slack:
        feeds = []
        for i in range(FEEDS):
            server.route(f"/f{i}.xml", body=_feed_xml(i), content_type="application/rss+xml")
            feeds.append({"name": f"f{i}", "url": server.url(f"/f{i}.xml"), "every": "1h"})
        common = {
            "feeds": feeds,
            "queue": {"broker_url": broker_url, "prefix": prefix, "score_batch": 8},
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
            "stories": {"enabled": False},
        }
        env = {
            "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
            "SLACK_CHANNEL": "C0ALERTS1",
            "SLACK_API_URL": slack.api_url,
            "MONITOR_BROKER_URL": broker_url,
        }
        procs: dict[str, MonitorProcess] = {}
        ports = {"run-a": free_port(), "run-b": free_port()}
        engine = create_db_engine(pg_url)
        upgrade(engine)

        def count(sql: str) -> int:
            with engine.connect() as connection:
                return int(connection.execute(sa.text(sql)).scalar() or 0)

        try:
            for name in ("worker-a", "worker-b"):
                config = write_config(tmp_path / f"{name}.yaml", pg_url, **common)
                procs[name] = MonitorProcess(
                    ["worker", "--threads", "4"], config, tmp_path / f"{name}.log", env=env
                )
            for name, port in ports.items():
                config = write_config(tmp_path / f"{name}.yaml", pg_url, **common, http={"port": port})
                procs[name] = MonitorProcess(["run"], config, tmp_path / f"{name}.log", env=env)
            for name, port in ports.items():
                wait_for(
                    lambda port=port: get_json(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, what=name
                )
            status, body = get_json(f"http://127.0.0.1:{ports['run-a']}/readyz")
            assert body["broker"] == {"ok": True, "error": None}

            expected = FEEDS * ENTRIES + SHARED
            # Scoring is under way: kill -9 one worker in the middle of it.
            wait_for(lambda: count("SELECT count(*) FROM article_scores") >= 20, 90, 0.05, what="scoring")
            assert count("SELECT count(*) FROM article_scores") < expected, "too late to kill mid-scoring"
            procs["worker-a"].kill9()
            killed_at = time.monotonic()

            wait_for(
                lambda: count("SELECT count(*) FROM article_scores") == expected,
                60,
                what="every article scored after the kill",
            )
            recovered = time.monotonic() - killed_at
            wait_for(lambda: len(slack.top_level()) >= 1, 30, what="the alert reaches Slack")
            time.sleep(2)  # a few more evaluation and delivery rounds: nothing more may be sent

            for name in ("worker-b", "run-a", "run-b"):
                code, seconds = procs[name].terminate()
                assert code == 0 and seconds < 10, (name, code, seconds)
        finally:
            for proc in procs.values():
                proc.close()
            tasks = TaskQueue(broker_url, prefix=prefix)
            try:
                tasks.delete()
            finally:
                tasks.close()

        articles = count("SELECT count(*) FROM articles")
        distinct_keys = count("SELECT count(DISTINCT dedupe_key) FROM articles")
        scores = count("SELECT count(*) FROM article_scores")
        unscored = count(
            "SELECT count(*) FROM articles a WHERE NOT EXISTS "
            "(SELECT 1 FROM article_scores s WHERE s.article_id = a.id)"
        )
        # scored once: no score was written after the article's one and only scoring (a second scoring
        # would leave scored_at later than the first score's; all scores predate the kill + recovery)
        notifications = count("SELECT count(*) FROM notifications")
        engine.dispose()
        polls = {path: hits for path, hits in server.hits.items() if path.startswith("/f")}

    assert articles == distinct_keys == FEEDS * ENTRIES + SHARED
    assert scores == articles and unscored == 0
    assert notifications == 1
    assert len(slack.top_level()) == 1, [m.text for m in slack.posts()]
    # Every feed polled, none twice (interval 1h) - a poll in flight in the killed worker may be redone.
    assert len(polls) == FEEDS
    assert sum(polls.values()) <= FEEDS + 4, polls
    assert recovered < 30, f"recovery took {recovered:.1f}s"
    print(f"all {scores} articles scored {recovered:.1f}s after kill -9 of a worker")
