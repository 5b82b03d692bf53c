"""Receivers and routes (issue 13, items 2 and 5), against real local servers on SQLite and PostgreSQL.

Two Slack channels (the Slack stand-in), a generic JSON webhook (tests/webhookserver.py), e-mail over SMTP
with STARTTLS and AUTH (aiosmtpd, tests/smtpserver.py): each receiver has its own outbox row per transition,
so one receiver's outage neither holds back nor duplicates another's message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alerthelp import add_article
from click.testing import CliRunner
from conftest import TOPICS, make_settings
from slackserver import DEFAULT_TOKEN, SlackServer
from smtpserver import PASSWORD, USER, SilentServer, SmtpServer
from sqlalchemy.exc import IntegrityError
from webhookserver import WebhookServer

from monitor.alerts import RuleEngine
from monitor.cli import cli
from monitor.config import ConfigError, Settings, load_config
from monitor.notify import Deliverer
from monitor.notify.routing import Router
from monitor.store import outbox
from monitor.store.migrate import alembic_config
from monitor.store.tables import Notification
from monitor.timeutil import utcnow

MIN = timedelta(minutes=1)
SECRET = "webhook-signing-secret-42"
NVIDIA_DROP = {
    "name": "nvidia-drop",
    "topic": "nvidia",
    "metric": "mean_sentiment",
    "window": "6h",
    "below": -0.3,
    "clear": -0.1,
    "min_articles": 5,
    "severity": "critical",
}
TPU_UP = {
    "name": "tpu-up",
    "topic": "tpu",
    "metric": "mean_sentiment",
    "window": "6h",
    "above": 0.3,
    "clear": 0.1,
    "min_articles": 5,
    "severity": "warning",
}
# The done-when routing: critical alerts page the critical channel and e-mail and go on; Nvidia's (critical
# or warning) also go to the webhook; everything else that reaches the end lands in the general channel.
ROUTES = [
    {"severity": "critical", "receivers": ["slack-critical", "oncall-email"], "continue": True},
    {"topic": "nvidia", "severity": ["critical", "warning"], "receivers": ["ops-webhook"]},
    {"receivers": ["slack-general"]},
]


@pytest.fixture
def webhook() -> Any:
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp(tmp_path: Path) -> Any:
    server = SmtpServer(tmp_path).start()
    yield server
    server.stop()


def email_receiver(smtp: SmtpServer, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "oncall-email",
        "kind": "email",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "starttls",
        "username": USER,
        "password": PASSWORD,
        "from": "AI-chip monitor <monitor@example.com>",
        "to": ["oncall@example.com", "analyst@example.com"],
        "ca_file": smtp.ca_file,
        **overrides,
    }


def config_data(
    engine: sa.engine.Engine, slack: SlackServer, webhook: WebhookServer, smtp: SmtpServer, **extra: Any
) -> dict[str, Any]:
    """Two Slack channels, a webhook and e-mail, routed as ROUTES (the `slack:` block has no channel, so the
    `default` receiver is the console)."""
    return {
        "database_url": engine.url.render_as_string(hide_password=False),
        "topics": TOPICS,
        "alerts": [NVIDIA_DROP, TPU_UP],
        "slack": {"bot_token": DEFAULT_TOKEN, "api_url": slack.api_url},
        "notify": {"timeout": "2s", "backoff_base": "2s", "backoff_max": "1m"},
        "http": {"public_url": "https://monitor.example.com"},
        "receivers": [
            {"name": "slack-critical", "kind": "slack_bot", "channel": "C0ALERTS1"},
            {"name": "slack-general", "kind": "slack_bot", "channel": "C0GENERAL"},
            {"name": "ops-webhook", "kind": "webhook", "url": webhook.url, "secret": SECRET},
            email_receiver(smtp),
        ],
        "routes": ROUTES,
        **extra,
    }


def settings_of(data: dict[str, Any]) -> Settings:
    return Settings.model_validate(data)


def add_run(
    engine: sa.engine.Engine, topic: str, sentiment: float, now: datetime, tag: str, n: int = 6
) -> None:
    for i in range(n):
        add_article(
            engine,
            title=f"{topic} {tag} story {i}",
            topic=topic,
            sentiment=sentiment - 0.02 * i,
            at=now - (30 - i) * MIN,
            url=f"https://news.test/{topic}/{tag}/{i}",
            source=f"source-{i}.test",
        )


def evaluate(engine: sa.engine.Engine, settings: Settings, now: datetime) -> list[str]:
    return sorted(f"{type(e).__name__}:{e.rule}" for e in RuleEngine(settings, engine).evaluate(now))


def rows(engine: sa.engine.Engine) -> list[Notification]:
    return outbox.list_notifications(engine)


def drain(deliverer: Deliverer, engine: sa.engine.Engine, now: datetime, rounds: int = 10) -> None:
    """Deliver at `now`, then at each retry time, until no row is pending (retries come due one by one)."""
    at = now
    for _ in range(rounds):
        deliverer.deliver_due(at)
        pending = [r.next_attempt_at for r in rows(engine) if r.status in ("pending", "sending")]
        if not pending:
            return
        at = max(at, max(pending))
    raise AssertionError(
        f"still pending after {rounds} rounds: {[(r.receiver, r.status) for r in rows(engine)]}"
    )


def cli_json(tmp_path: Path, data: dict[str, Any], *args: str) -> Any:
    config = tmp_path / "receivers.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--config", str(config), *args, "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ----------------------------------------------------------------------------- done when


def test_a_critical_alert_reaches_its_routes_once_each_through_a_webhook_outage(
    engine: sa.engine.Engine,
    tmp_path: Path,
    slack_server: SlackServer,
    webhook: WebhookServer,
    smtp: SmtpServer,
) -> None:
    data = config_data(engine, slack_server, webhook, smtp)
    settings = settings_of(data)
    now = utcnow()
    add_run(engine, "nvidia", -0.6, now, "slides")
    add_run(engine, "tpu", 0.7, now, "wins")
    assert evaluate(engine, settings, now) == ["AlertFired:nvidia-drop", "AlertFired:tpu-up"]

    by_receiver = sorted((r.receiver, json.loads(r.payload)["rule"]) for r in rows(engine))
    assert by_receiver == [
        ("oncall-email", "nvidia-drop"),
        ("ops-webhook", "nvidia-drop"),
        ("slack-critical", "nvidia-drop"),
        ("slack-general", "tpu-up"),
    ]  # and nothing for `default` (the console)

    webhook.fail(status=500, times=2)  # the webhook is down for two attempts
    deliverer = Deliverer(settings, engine)
    report = deliverer.deliver_due(now)
    assert (report.delivered, report.retried, report.failed) == (3, 1, 0)  # the outage held back nobody else
    [hook_row] = [r for r in rows(engine) if r.receiver == "ops-webhook"]
    assert hook_row.status == "pending" and "webhook server error (HTTP 500" in hook_row.last_error
    drain(deliverer, engine, now)
    assert {r.receiver: r.status for r in rows(engine)} == dict.fromkeys(
        ["oncall-email", "ops-webhook", "slack-critical", "slack-general"], "delivered"
    )

    # Each destination got its alert exactly once, and no other alert.
    critical = [m for m in slack_server.top_level() if m.channel == "C0ALERTS1"]
    general = [m for m in slack_server.top_level() if m.channel == "C0GENERAL"]
    assert len(critical) == 1 and "nvidia-drop" in critical[0].text and "tpu-up" not in critical[0].text
    assert len(general) == 1 and "tpu-up" in general[0].text
    [mail] = smtp.messages
    assert "nvidia-drop" in mail["Subject"] and mail["To"] == "oncall@example.com, analyst@example.com"
    assert smtp.logins == [USER]
    assert len(webhook.requests) == 3 and [r.status for r in webhook.requests] == [500, 500, 200]
    assert len({r.json["key"] for r in webhook.requests}) == 1  # one notification, retried
    [posted] = webhook.delivered
    assert posted["alert"]["rule"] == "nvidia-drop" and posted["alert"]["severity"] == "critical"

    # The resolution follows the same routes: a thread reply and an edit in Slack, a reply e-mail, a POST.
    add_run(engine, "nvidia", 0.8, now + 5 * MIN, "rebounds", n=40)
    assert evaluate(engine, settings, now + 5 * MIN) == ["AlertResolved:nvidia-drop"]
    resolved = [r for r in rows(engine) if r.kind == "resolved"]
    assert sorted(r.receiver for r in resolved) == ["oncall-email", "ops-webhook", "slack-critical"]
    drain(deliverer, engine, now + 5 * MIN)
    assert [r.status for r in rows(engine)] == ["delivered"] * 7
    assert len(slack_server.replies(critical[0].ts)) == 1 and slack_server.top_level()[0].edited
    assert len([m for m in slack_server.top_level() if m.channel == "C0GENERAL"]) == 1
    assert len(smtp.messages) == 2 and smtp.messages[1]["In-Reply-To"] == mail["Message-ID"]
    assert [b["kind"] for b in webhook.delivered] == ["fired", "resolved"]
    assert webhook.delivered[1]["alert"]["status"] == "resolved"

    shown = cli_json(tmp_path, data, "alerts")
    assert {e["rule"]: e["notification"] for e in shown} == {
        "nvidia-drop": "delivered",
        "tpu-up": "delivered",
    }
    [fired_id] = [e["id"] for e in shown if e["rule"] == "nvidia-drop"]
    detail = cli_json(tmp_path, data, "alerts", "show", str(fired_id))
    assert sorted((n["receiver"], n["status"]) for n in detail["notifications"]) == [
        ("oncall-email", "delivered"),
        ("ops-webhook", "delivered"),
        ("slack-critical", "delivered"),
    ]


def test_one_receivers_outage_does_not_hold_back_another_receivers_resolved_notice(
    engine: sa.engine.Engine,
    tmp_path: Path,
    slack_server: SlackServer,
    webhook: WebhookServer,
    smtp: SmtpServer,
) -> None:
    """Rows of one alert go out in order per receiver: the webhook's pending `fired` blocks only its own
    `resolved`, never Slack's or the e-mail's."""
    data = config_data(engine, slack_server, webhook, smtp)
    settings = settings_of(data)
    now = utcnow()
    add_run(engine, "nvidia", -0.6, now, "slides")
    evaluate(engine, settings, now)
    webhook.fail(status=503, times=100)
    deliverer = Deliverer(settings, engine)
    deliverer.deliver_due(now)
    [episode] = cli_json(tmp_path, data, "alerts")  # the failing receiver is named with its reason
    assert episode["notification"] == "pending"
    assert episode["notification_error"].startswith("ops-webhook: webhook server error (HTTP 503")
    add_run(engine, "nvidia", 0.8, now + 5 * MIN, "rebounds", n=40)
    evaluate(engine, settings, now + 5 * MIN)
    deliverer.deliver_due(now + 5 * MIN)
    status = {(r.receiver, r.kind): r.status for r in rows(engine)}
    assert status[("slack-critical", "resolved")] == "delivered"
    assert status[("oncall-email", "resolved")] == "delivered"
    assert status[("ops-webhook", "fired")] == "pending" and status[("ops-webhook", "resolved")] == "pending"

    with webhook._lock:
        webhook._failures.clear()  # the webhook is back: its two rows go out, in order
    drain(deliverer, engine, now + 5 * MIN)
    assert [b["kind"] for b in webhook.delivered] == ["fired", "resolved"]
    assert len(smtp.messages) == 2 and len(slack_server.top_level()) == 1


# ----------------------------------------------------------------------------- the webhook receiver


def test_webhook_payload_is_signed_and_documented(
    sqlite_engine: sa.engine.Engine, slack_server: SlackServer, webhook: WebhookServer, smtp: SmtpServer
) -> None:
    data = config_data(sqlite_engine, slack_server, webhook, smtp, routes=[{"receivers": ["ops-webhook"]}])
    settings = settings_of(data)
    now = utcnow()
    add_run(sqlite_engine, "nvidia", -0.6, now, "slides")
    evaluate(sqlite_engine, settings, now)
    assert Deliverer(settings, sqlite_engine).deliver_due(now).delivered == 1
    [request] = webhook.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Monitor-Signature"] == expected
    assert request.headers["Content-Type"].startswith("application/json")
    body = request.json
    assert request.headers["X-Monitor-Key"] == body["key"]
    assert body["version"] == 1 and body["receiver"] == "ops-webhook" and body["kind"] == "fired"
    assert body["title"].startswith("🔴 CRITICAL · nvidia-drop · nvidia")
    alert = body["alert"]
    assert (alert["rule"], alert["topic"], alert["severity"], alert["status"]) == (
        "nvidia-drop",
        "nvidia",
        "critical",
        "firing",
    )
    assert alert["metric"] == "mean_sentiment" and alert["value"] < alert["threshold"] == -0.3
    assert len(body["headlines"]) == 5 and body["headlines"][0]["url"].startswith("https://news.test/")
    assert body["dashboard_url"] == "https://monitor.example.com/?topic=nvidia"
    assert body["details"]["window_seconds"] == 6 * 3600 and "key" not in body["details"]


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        (410, "failed", "webhook endpoint is gone (HTTP 410"),
        (404, "failed", "webhook rejected the notification (HTTP 404"),
        (301, "failed", "webhook answered a redirect (HTTP 301"),
        (500, "pending", "webhook server error (HTTP 500"),
        (429, "pending", "webhook rate limited (HTTP 429"),
    ],
)
def test_webhook_answers_retry_or_give_up_with_a_clear_reason(
    engine: sa.engine.Engine,
    tmp_path: Path,
    slack_server: SlackServer,
    webhook: WebhookServer,
    smtp: SmtpServer,
    status: int,
    outcome: str,
    reason: str,
) -> None:
    data = config_data(engine, slack_server, webhook, smtp, routes=[{"receivers": ["ops-webhook"]}])
    settings = settings_of(data)
    now = utcnow()
    add_run(engine, "nvidia", -0.6, now, "slides")
    evaluate(engine, settings, now)
    webhook.fail(status=status, body="Gone" if status == 410 else "nope", retry_after="7")
    Deliverer(settings, engine).deliver_due(now)
    [row] = rows(engine)
    assert row.status == outcome and reason in row.last_error
    assert webhook.url not in row.last_error
    if status == 429:
        assert 7 <= (row.next_attempt_at - now).total_seconds() <= 7.5
    if outcome == "failed":  # shown by `monitor alerts`, kept for `monitor alerts redeliver`
        [episode] = cli_json(tmp_path, data, "alerts")
        assert episode["notification"] == "failed" and reason in episode["notification_error"]
        assert outbox.requeue_failed(engine, now) == 1
        assert Deliverer(settings, engine).deliver_due(now).delivered == 1
        assert len(webhook.delivered) == 1


def test_a_hanging_webhook_is_cut_off_at_the_timeout(
    sqlite_engine: sa.engine.Engine, slack_server: SlackServer, webhook: WebhookServer, smtp: SmtpServer
) -> None:
    data = config_data(sqlite_engine, slack_server, webhook, smtp, routes=[{"receivers": ["ops-webhook"]}])
    settings = settings_of(data)
    now = utcnow()
    add_run(sqlite_engine, "nvidia", -0.6, now, "slides")
    evaluate(sqlite_engine, settings, now)
    webhook.fail(hang=10)
    started = time.monotonic()
    assert Deliverer(settings, sqlite_engine).deliver_due(now).retried == 1
    assert time.monotonic() - started < 4
    [row] = rows(sqlite_engine)
    assert row.status == "pending" and "no complete answer within 2s" in row.last_error


# ----------------------------------------------------------------------------- the e-mail receiver


def email_settings(engine: sa.engine.Engine, tmp_path: Path, **receiver: Any) -> Settings:
    smtp_config = {
        "name": "oncall-email",
        "kind": "email",
        "host": "127.0.0.1",
        "from": "monitor@example.com",
        "to": ["oncall@example.com"],
        **receiver,
    }
    return make_settings(
        tmp_path,
        database_url=engine.url.render_as_string(hide_password=False),
        alerts=[NVIDIA_DROP],
        notify={"timeout": "1s", "backoff_base": "2s"},
        receivers=[smtp_config],
        routes=[{"receivers": ["oncall-email"]}],
    )


def fire_nvidia(engine: sa.engine.Engine, settings: Settings, now: datetime) -> None:
    add_run(engine, "nvidia", -0.6, now, "slides")
    assert evaluate(engine, settings, now) == ["AlertFired:nvidia-drop"]


def test_email_goes_over_starttls_with_a_login(
    engine: sa.engine.Engine, tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = email_settings(
        engine, tmp_path, port=smtp.port, username=USER, password=PASSWORD, ca_file=smtp.ca_file
    )
    now = utcnow()
    fire_nvidia(engine, settings, now)
    assert Deliverer(settings, engine).deliver_due(now).delivered == 1
    [mail] = smtp.messages
    assert mail["Subject"].startswith("[aichip-monitor] 🔴 CRITICAL · nvidia-drop · nvidia")
    assert mail["Auto-Submitted"] == "auto-generated" and mail["X-Monitor-Kind"] == "fired"
    body = mail.get_content()
    assert "Mean sentiment is" in body and "https://news.test/nvidia/slides/" in body
    assert smtp.envelopes == [("monitor@example.com", ["oncall@example.com"])]
    [row] = rows(engine)
    assert row.delivered_via == "smtp" and row.message_id == mail["Message-ID"]


def test_email_refused_login_fails_with_the_servers_reason(
    engine: sa.engine.Engine, tmp_path: Path, smtp: SmtpServer
) -> None:
    smtp.refuse_login = True
    settings = email_settings(
        engine, tmp_path, port=smtp.port, username=USER, password="wrong", ca_file=smtp.ca_file
    )
    now = utcnow()
    fire_nvidia(engine, settings, now)
    assert Deliverer(settings, engine).deliver_due(now).failed == 1
    [row] = rows(engine)
    assert row.status == "failed" and "SMTP server refused the login (535" in row.last_error
    assert "wrong" not in row.last_error and smtp.messages == []


def test_email_temporary_refusal_is_retried(
    engine: sa.engine.Engine, tmp_path: Path, smtp: SmtpServer
) -> None:
    smtp.fail_data(451, times=1)
    settings = email_settings(
        engine, tmp_path, port=smtp.port, username=USER, password=PASSWORD, ca_file=smtp.ca_file
    )
    now = utcnow()
    fire_nvidia(engine, settings, now)
    deliverer = Deliverer(settings, engine)
    assert deliverer.deliver_due(now).retried == 1
    [row] = rows(engine)
    assert row.status == "pending" and "SMTP server asked to try later (451" in row.last_error
    assert deliverer.deliver_due(row.next_attempt_at).delivered == 1
    assert len(smtp.messages) == 1


def test_email_untrusted_certificate_fails_clearly(
    sqlite_engine: sa.engine.Engine, tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = email_settings(sqlite_engine, tmp_path, port=smtp.port, username=USER, password=PASSWORD)
    now = utcnow()
    fire_nvidia(sqlite_engine, settings, now)
    assert Deliverer(settings, sqlite_engine).deliver_due(now).failed == 1
    [row] = rows(sqlite_engine)
    assert "TLS certificate is not trusted" in row.last_error and "ca_file" in row.last_error


def test_a_hanging_smtp_server_is_bounded_by_the_timeout(
    sqlite_engine: sa.engine.Engine, tmp_path: Path
) -> None:
    silent = SilentServer()
    try:
        settings = email_settings(sqlite_engine, tmp_path, port=silent.port)
        now = utcnow()
        fire_nvidia(sqlite_engine, settings, now)
        started = time.monotonic()
        assert Deliverer(settings, sqlite_engine).deliver_due(now).retried == 1
        assert time.monotonic() - started < 3
    finally:
        silent.stop()
    [row] = rows(sqlite_engine)
    assert row.status == "pending" and "SMTP server gave no complete answer within 1s" in row.last_error


# ----------------------------------------------------------------------------- routes and configuration


def test_routes_first_match_continue_wildcards_and_the_default() -> None:
    settings = Settings.model_validate(
        {
            "receivers": [
                {"name": name, "kind": "console"} for name in ("pager", "chips", "hook", "everything")
            ],
            "routes": [
                {"severity": "critical", "receivers": ["pager"], "continue": True},
                {"rule": "*-drop", "topic": ["nvidia", "tpu"], "receivers": ["chips", "pager"]},
                {"rule": "feed-health", "receivers": ["hook"]},
            ],
        }
    )
    router = Router(settings)
    assert router.receivers("nvidia-drop", "nvidia", "critical") == ["pager", "chips"]  # continued, once each
    assert router.receivers("tpu-drop", "tpu", "warning") == ["chips", "pager"]
    assert router.receivers("feed-health", "some-feed", "critical") == ["pager", "hook"]
    assert router.receivers("feed-health", "some-feed", "warning") == ["hook"]
    assert router.receivers("bubble-up", "ai_bubble", "info") == ["default"]  # no route: the default
    assert Router(Settings()).receivers("x", "y", "critical") == ["default"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"routes": [{"severity": "critical", "receivers": ["pager"]}]},
            "routes.0.receivers: unknown receiver 'pager' (known: default, team)",
        ),
        (
            {"receivers": [{"name": "team", "kind": "console"}, {"name": "team", "kind": "console"}]},
            "receivers: duplicate receiver name(s): team",
        ),
        (
            {"receivers": [{"name": "team", "kind": "slack_bot", "channel": "C0ALERTS1"}]},
            "receivers.0.token: receiver 'team' needs a bot token",
        ),
        (
            {"receivers": [{"name": "team", "kind": "webhook", "url": "ftp://example.com/hook"}]},
            "receivers.0.webhook.url: must be an http(s) URL",
        ),
        (
            {"receivers": [{"name": "team", "kind": "pager"}]},
            "receivers.0: Input tag 'pager' found using 'kind' does not match any of the expected tags",
        ),
        (
            {
                "receivers": [
                    {
                        "name": "team",
                        "kind": "email",
                        "host": "mail.example.com",
                        "security": "none",
                        "username": "u",
                        "password": "p",
                        "from": "monitor@example.com",
                        "to": ["a@example.com"],
                    }
                ]
            },
            "a login needs an encrypted connection: set security to starttls or tls",
        ),
        (
            {
                "receivers": [
                    {"name": "team", "kind": "email", "host": "h", "from": "nobody", "to": ["a@example.com"]}
                ]
            },
            "receivers.0.email.from: Value error, not an e-mail address: 'nobody'",
        ),
    ],
)
def test_receiver_and_route_mistakes_are_config_errors(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    data: dict[str, Any] = {"topics": TOPICS, "receivers": [{"name": "team", "kind": "console"}], **extra}
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(path) in str(error.value)
    assert message.removeprefix("receivers.0.email.from: Value error, ") in str(error.value)
    assert "ftp://example.com" not in str(error.value)


def test_an_existing_config_without_receivers_goes_to_the_default_destination(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer
) -> None:
    settings = make_settings(
        tmp_path,
        alerts=[NVIDIA_DROP],
        slack={"bot_token": DEFAULT_TOKEN, "channel": "C0ALERTS1", "api_url": slack_server.api_url},
    )
    assert settings.receivers is None and settings.routes is None
    now = utcnow()
    fire_nvidia(engine, settings, now)
    assert Deliverer(settings, engine).deliver_due(now).delivered == 1
    [row] = rows(engine)
    assert row.receiver == "default" and row.delivered_via == "bot"
    assert [m.channel for m in slack_server.posts()] == ["C0ALERTS1"]


def test_a_row_for_a_receiver_dropped_from_the_config_fails_clearly(
    engine: sa.engine.Engine, tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = email_settings(engine, tmp_path, port=smtp.port, username=USER, password=PASSWORD)
    now = utcnow()
    fire_nvidia(engine, settings, now)
    without = make_settings(tmp_path, alerts=[NVIDIA_DROP])
    assert Deliverer(without, engine).deliver_due(now).failed == 1
    [row] = rows(engine)
    assert row.status == "failed" and "receiver 'oncall-email' is not configured" in row.last_error


# ----------------------------------------------------------------------------- the migration


def test_migration_0004_keeps_existing_notifications_as_the_default_receivers(db_url: str) -> None:
    from monitor.store.db import create_db_engine

    engine = create_db_engine(db_url)
    try:
        config = alembic_config(engine)
        command.upgrade(config, "0003")
        at = utcnow()
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO alerts (fingerprint, rule, topic, state, article_count, slack_channel, "
                    "slack_ts, version) VALUES ('fp1', 'r', 't', 'firing', 5, 'C0ALERTS1', '1700.1', 0)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO alert_events (id, fingerprint, rule, topic, kind, article_count, at) "
                    "VALUES (1, 'fp1', 'r', 't', 'fired', 5, :at)"
                ),
                {"at": at},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO notifications (alert_event_id, fingerprint, kind, payload, status, "
                    "attempts, created_at, channel, slack_ts, outcome_unknown, delivered_via) VALUES "
                    "(1, 'fp1', 'fired', '{}', 'delivered', 1, :at, 'C0ALERTS1', '1700.1', false, 'bot')"
                ),
                {"at": at},
            )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT receiver, message_id, channel FROM notifications")).one()
            alert = connection.execute(sa.text("SELECT message_channel, message_id FROM alerts")).one()
        assert tuple(row) == ("default", "1700.1", "C0ALERTS1")
        assert tuple(alert) == ("C0ALERTS1", "1700.1")

        insert = sa.text(
            "INSERT INTO notifications (alert_event_id, receiver, fingerprint, kind, payload, status, "
            "attempts, created_at, outcome_unknown) "
            "VALUES (1, :receiver, 'fp1', 'fired', '{}', 'pending', 0, :at, false)"
        )
        with engine.begin() as connection:  # a second receiver of the same transition
            connection.execute(insert, {"receiver": "ops-webhook", "at": at})
        with pytest.raises(IntegrityError), engine.begin() as connection:  # ... but each receiver once
            connection.execute(insert, {"receiver": "ops-webhook", "at": at})

        command.downgrade(config, "0003")
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT slack_ts FROM notifications")).scalars().all()
            assert kept == ["1700.1"]  # the default receiver's row, as it was
            assert connection.execute(sa.text("SELECT slack_ts FROM alerts")).scalar() == "1700.1"
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- digests to named receivers


def test_a_digest_goes_to_the_receivers_it_names(
    sqlite_engine: sa.engine.Engine,
    slack_server: SlackServer,
    webhook: WebhookServer,
    smtp: SmtpServer,
) -> None:
    from monitor.digest.send import DigestSender

    data = config_data(
        sqlite_engine, slack_server, webhook, smtp, digest={"receivers": ["ops-webhook", "oncall-email"]}
    )
    settings = settings_of(data)
    now = utcnow()
    add_run(sqlite_engine, "nvidia", -0.6, now, "slides")
    sender = DigestSender(settings, sqlite_engine)
    sender.send_now(sender.build(sender.period_since(None, now)), now)
    assert sorted(r.receiver for r in rows(sqlite_engine)) == ["oncall-email", "ops-webhook"]
    assert Deliverer(settings, sqlite_engine).deliver_due(now).delivered == 2
    [posted] = webhook.delivered
    assert posted["kind"] == "digest" and posted["alert"] is None
    assert posted["digest"]["topics"][0]["topic"] == "nvidia" and posted["title"].startswith("Digest · ")
    [mail] = smtp.messages
    assert mail["Subject"].startswith("[aichip-monitor] Digest · ") and "nvidia" in mail.get_content()
    assert slack_server.posts() == []
