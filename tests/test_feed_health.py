"""Feed health on SQLite and PostgreSQL: a feed that keeps failing (the local feed server answering 500) or
stops producing raises an alert named after it, which resolves when the feed recovers; per-feed settings
and disabling; silences apply; `monitor alerts` lists it. Real feeds over HTTP, real database, the Slack
stand-in.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from conftest import TOPICS, make_settings
from fastapi.testclient import TestClient
from feedserver import FeedServer
from headlines import items, rss
from slackserver import DEFAULT_TOKEN, SlackServer
from sqlmodel import Session

from monitor.alerts import RuleEngine
from monitor.alerts.silencing import new_silence
from monitor.api import create_app
from monitor.cli import cli
from monitor.collect import Collector
from monitor.config import ConfigError, Settings, load_config
from monitor.notify import Deliverer
from monitor.store import alerts as alert_store
from monitor.store import silences
from monitor.store.silences import Matchers
from monitor.store.tables import Alert, AlertEvent, Article, Feed, Notification
from monitor.timeutil import utcnow

DAY = timedelta(days=1)


def _settings(
    engine: sa.engine.Engine,
    tmp_path: Path,
    feeds: list[dict],
    slack: SlackServer | None = None,
    **extra: object,
) -> Settings:
    if slack is not None:
        extra["slack"] = {"bot_token": DEFAULT_TOKEN, "channel": "C0ALERTS1", "api_url": slack.api_url}
        extra["notify"] = {"timeout": "2s"}
    return make_settings(
        tmp_path, database_url=engine.url.render_as_string(hide_password=False), feeds=feeds, **extra
    )


def _poll(settings: Settings, engine: sa.engine.Engine, times: int = 1) -> None:
    collector = Collector(settings, engine)
    try:
        for _ in range(times):
            for feed in settings.feeds:
                collector.collect_feed(feed)
    finally:
        collector.close()


def _cycle(settings: Settings, engine: sa.engine.Engine, now=None) -> list:  # noqa: ANN001
    """What `monitor run` does at an evaluation tick: evaluate (rules and feed health), then deliver."""
    events = RuleEngine(settings, engine).evaluate(now)
    Deliverer(settings, engine).deliver_due(now)
    return events


def _history(engine: sa.engine.Engine, feed: str) -> list[tuple[str, dict, bool]]:
    """(kind, detail, has an outbox row) of the feed's health alert, oldest first."""
    fp = alert_store.fingerprint("feed-health", feed)
    with Session(engine) as session:
        rows = session.execute(
            sa.select(AlertEvent).where(AlertEvent.fingerprint == fp).order_by(AlertEvent.id)
        ).scalars()
        notified = set(session.execute(sa.select(Notification.alert_event_id)).scalars())
        return [(r.kind, json.loads(r.detail), r.id in notified) for r in rows]


def test_a_failing_feed_raises_an_alert_named_after_it_and_resolves_when_it_recovers(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer
) -> None:
    with FeedServer() as server:
        url = server.route("/wire.xml", status=500, body=b"<html>upstream <!channel> broke</html>")
        healthy = server.route("/ok.xml", body=rss(items("ok", ["Nvidia ships Rubin"], utcnow(), DAY)))
        feeds = [{"name": "chip-wire", "url": url}, {"name": "steady", "url": healthy}]
        settings = _settings(engine, tmp_path, feeds, slack_server, feed_health={"failures": 3})

        _poll(settings, engine, times=2)
        assert _cycle(settings, engine) == []  # two failures: below the limit
        _poll(settings, engine)
        [fired] = _cycle(settings, engine)
        assert (fired.rule, fired.topic, fired.value, fired.threshold) == (
            "feed-health",
            "chip-wire",
            3.0,
            3.0,
        )
        assert fired.fingerprint == alert_store.fingerprint("feed-health", "chip-wire")

        [post] = slack_server.top_level()
        text = post.blocks[1]["text"]["text"]
        assert post.blocks[0]["text"]["text"] == "🟠 WARNING · feed-health · chip-wire"
        assert "Feed chip-wire is failing: 3 failed polls in a row (alert at 3)" in text
        assert "Last error: HTTP 500" in text and "Last worked: never" in text
        assert "<!channel>" not in post.text + text  # the error body is escaped
        assert "feed-health (chip-wire)" in post.text

        # More failures: the same alert, no second message (no `repeat` configured).
        _poll(settings, engine)
        assert _cycle(settings, engine) == []
        assert len(slack_server.posts()) == 1

        # The feed answers again: resolved, the original message edited and a reply in its thread.
        server.route("/wire.xml", body=rss(items("w", ["Nvidia loses $140bn as TPUs gain"], utcnow(), DAY)))
        _poll(settings, engine)
        [resolved] = _cycle(settings, engine)
    assert type(resolved).__name__ == "AlertResolved" and resolved.topic == "chip-wire"
    [reply] = slack_server.replies(post.ts)
    assert "Feed chip-wire resolved: the feed works again" in reply.blocks[1]["text"]["text"]
    [update] = slack_server.calls("chat.update")
    assert "RESOLVED" in json.dumps(update.params, ensure_ascii=False)
    assert [kind for kind, _, sent in _history(engine, "chip-wire") if sent] == ["fired", "resolved"]
    assert _history(engine, "steady") == []


def test_a_feed_that_stops_producing_raises_then_resolves(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer
) -> None:
    now = utcnow()
    with FeedServer() as server:
        url = server.route("/quiet.xml", body=rss(items("q", ["TPU demand rises"], now - 9 * DAY, DAY)))
        settings = _settings(engine, tmp_path, [{"name": "quiet", "url": url}], slack_server)
        _poll(settings, engine)
        # Nine days pass with polls that bring nothing new (the same entry, then 304s).
        with engine.begin() as connection:
            connection.execute(sa.update(Article.__table__).values(collected_at=now - 9 * DAY))
            connection.execute(sa.update(Feed.__table__).values(created_at=now - 30 * DAY))
        _poll(settings, engine, times=2)

        [fired] = _cycle(settings, engine)
        assert fired.topic == "quiet" and fired.threshold == 7.0 and 8.9 < fired.value < 9.1
        [post] = slack_server.top_level()
        text = post.blocks[1]["text"]["text"]
        assert "Feed quiet has brought nothing new since" in text and "9d ago; alert after 7d" in text
        assert "Last worked:" in text and "last poll not modified" in text

        server.route("/quiet.xml", body=rss(items("q2", ["Trainium3 wins new customer"], utcnow(), DAY)))
        _poll(settings, engine)
        [resolved] = _cycle(settings, engine)
    assert resolved.topic == "quiet"
    [reply] = slack_server.replies(post.ts)
    assert "the feed works again" in reply.blocks[1]["text"]["text"]

    # `monitor alerts` lists both episodes' alert like any other.
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": engine.url.render_as_string(hide_password=False),
                "topics": TOPICS,
                "feeds": [{"name": "quiet", "url": url}],
            }
        ),
        encoding="utf-8",
    )
    listed = CliRunner().invoke(cli, ["--config", str(config), "alerts", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    [episode] = json.loads(listed.stdout)
    assert (episode["rule"], episode["topic"], episode["state"]) == ("feed-health", "quiet", "resolved")
    shown = CliRunner().invoke(cli, ["--config", str(config), "alerts", "show", str(episode["id"])])
    assert shown.exit_code == 0 and "Feed quiet has brought nothing new since" in shown.output

    # ... and so does the API, unless topics are asked for (a feed's name is not a topic).
    client = TestClient(create_app(settings, engine))
    assert [e["topic"] for e in client.get("/api/alerts").json()["items"]] == ["quiet"]
    assert client.get("/api/alerts", params={"topic": "nvidia"}).json()["items"] == []


def test_per_feed_settings_and_disabling(engine: sa.engine.Engine, tmp_path: Path) -> None:
    with FeedServer() as server:
        feeds = [
            {"name": "strict", "url": server.route("/a.xml", status=503), "health": {"failures": 1}},
            {"name": "lenient", "url": server.route("/b.xml", status=503)},
            {"name": "ignored", "url": server.route("/c.xml", status=503), "health": {"enabled": False}},
            {"name": "off", "url": server.route("/d.xml", status=503), "enabled": False},
        ]
        settings = _settings(engine, tmp_path, feeds, feed_health={"failures": 2, "severity": "critical"})
        _poll(settings, engine)
        assert [e.topic for e in _cycle(settings, engine)] == ["strict"]
        _poll(settings, engine)
        assert [e.topic for e in _cycle(settings, engine)] == ["lenient"]
        [(kind, detail, _)] = _history(engine, "lenient")
        assert (kind, detail["severity"], detail["problem"]) == ("fired", "critical", "failing")
        assert _history(engine, "ignored") == [] and _history(engine, "off") == []

        # Turning the check off for a firing feed resolves its alert, saying why.
        feeds[0]["health"] = {"enabled": False}
        [retired] = _cycle(_settings(engine, tmp_path, feeds, feed_health={"failures": 2}), engine)
    assert retired.topic == "strict" and type(retired).__name__ == "AlertResolved"
    kind, detail, sent = _history(engine, "strict")[-1]
    assert (kind, detail["reason"], sent) == ("resolved", "rule_removed", True)
    with Session(engine) as session:
        states = dict(session.execute(sa.select(Alert.topic, Alert.state)).all())
    assert states == {"strict": "resolved", "lenient": "firing"}

    # Globally off: nothing is checked, open alerts resolve.
    [gone] = _cycle(_settings(engine, tmp_path, feeds, feed_health={"enabled": False}), engine)
    assert gone.topic == "lenient"


def test_a_silenced_feed_alert_notifies_once_when_the_silence_is_expired(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer
) -> None:
    with FeedServer() as server:
        feeds = [{"name": "flaky", "url": server.route("/f.xml", status=500)}]
        settings = _settings(engine, tmp_path, feeds, slack_server, feed_health={"failures": 1})
        silence = new_silence(
            settings,
            engine,
            Matchers(rule="feed-health", topic="flaky"),
            reason="provider maintenance",
            created_by="ops",
            now=utcnow(),
            duration="1h",
        )
        _poll(settings, engine)
        _cycle(settings, engine)
        assert slack_server.posts() == []
        [(kind, detail, sent)] = _history(engine, "flaky")
        assert (kind, detail["silenced_by"], sent) == ("fired", silence.id, False)

        silences.expire(engine, silence.id, utcnow())
        _cycle(settings, engine)
        _cycle(settings, engine)
    [post] = slack_server.posts()
    assert "STILL BROKEN" in post.blocks[0]["text"]["text"]
    assert f"Silence #{silence.id} ended" in post.blocks[1]["text"]["text"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"feed_health": {"failures": -1}}, "feed_health.failures"),
        ({"feed_health": {"silent_for": "a week"}}, "feed_health.silent_for: not a duration"),
        ({"feed_health": {"cooldown": "1h"}}, "feed_health.cooldown: Extra inputs are not permitted"),
        (
            {"feeds": [{"name": "a", "url": "http://x.test/a", "health": {"enabled": "maybe"}}]},
            "feeds.0.health.enabled",
        ),
        (
            {"feeds": [{"name": "a", "url": "http://x.test/a", "health": {"repeat": "1h"}}]},
            "feeds.0.health.repeat: Extra inputs are not permitted",
        ),
        (
            {"alerts": [{"name": "feed-health", "topic": "nvidia", "metric": "volume", "above": 3}]},
            "alerts.0.name: 'feed-health' is reserved",
        ),
    ],
)
def test_feed_health_settings_are_validated(tmp_path: Path, data: dict, message: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump({"topics": TOPICS, **data}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert message in str(caught.value)


def test_per_feed_values_override_the_defaults(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        feed_health={"failures": 4, "silent_for": "3d", "repeat": "12h"},
        feeds=[{"name": "a", "url": "http://x.test/a", "health": {"silent_for": "0s", "severity": "info"}}],
    )
    merged = settings.feed_health.merged(settings.feeds[0].health)
    assert (merged.failures, merged.silent_for, merged.severity, merged.repeat) == (
        4,
        timedelta(0),
        "info",
        timedelta(hours=12),
    )
