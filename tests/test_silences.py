"""Silences on SQLite and PostgreSQL: a silenced alert is recorded but sends nothing until the silence ends,
then exactly one notification; expiring through the CLI and the API; bad silences refused with clear errors.

Real database, the real rule engine and outbox, and the local Slack stand-in (tests/slackserver.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alerthelp import add_article
from click.testing import CliRunner
from conftest import TOPICS, make_settings
from fastapi.testclient import TestClient
from slackserver import DEFAULT_TOKEN, SlackServer
from sqlmodel import Session

from monitor.alerts import RuleEngine
from monitor.alerts.silencing import new_silence
from monitor.api import create_app
from monitor.cli import cli
from monitor.config import Settings
from monitor.notify import Deliverer
from monitor.store import silences
from monitor.store.silences import Matchers, SilenceError
from monitor.store.tables import AlertEvent, Notification
from monitor.timeutil import utcnow

MIN = timedelta(minutes=1)
TOKEN = "s3cret-token"
RULE = {
    "name": "nvidia-drop",
    "topic": "nvidia",
    "metric": "mean_sentiment",
    "window": "6h",
    "below": -0.3,
    "clear": -0.1,
    "min_articles": 3,
    "repeat": "30m",
    "severity": "critical",
}


def _settings(tmp_path: Path, engine: sa.engine.Engine, slack: SlackServer | None = None) -> Settings:
    extra: dict[str, object] = {}
    if slack is not None:
        extra["slack"] = {"bot_token": DEFAULT_TOKEN, "channel": "C0ALERTS1", "api_url": slack.api_url}
        extra["notify"] = {"timeout": "2s"}
    return make_settings(
        tmp_path,
        database_url=engine.url.render_as_string(hide_password=False),
        alerts=[RULE],
        http={"api_token": TOKEN},
        **extra,
    )


def _negative_news(engine: sa.engine.Engine, at) -> None:  # noqa: ANN001
    for i in range(4):
        add_article(
            engine,
            title=f"Nvidia slides as TPUs win deal {i}",
            topic="nvidia",
            sentiment=-0.7,
            at=at - i * MIN,
            url=f"https://news.test/neg-{i}",
            source=f"source{i}.test",
        )


def _events(engine: sa.engine.Engine) -> list[tuple[str, int | None, bool]]:
    """(kind, silenced_by, has an outbox row) per alert event, oldest first."""
    with Session(engine) as session:
        rows = session.execute(sa.select(AlertEvent).order_by(AlertEvent.id)).scalars().all()
        notified = set(session.execute(sa.select(Notification.alert_event_id)).scalars())
    out = []
    for row in rows:
        detail = json.loads(row.detail) if row.detail else {}
        out.append((row.kind, detail.get("silenced_by"), row.id in notified))
    return out


def _silence(settings: Settings, engine: sa.engine.Engine, now, **kwargs: object):  # noqa: ANN001, ANN202
    matchers = Matchers(*(kwargs.pop(key, None) for key in ("rule", "topic", "severity")))  # type: ignore[arg-type]
    return new_silence(
        settings, engine, matchers, reason="known: earnings day", created_by="ana", now=now, **kwargs
    )


def _config_file(tmp_path: Path, engine: sa.engine.Engine) -> Path:
    path = tmp_path / "monitor.yaml"
    data = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "topics": TOPICS,
        "alerts": [RULE],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the lifecycle


def test_a_silenced_alert_sends_nothing_until_the_silence_ends_then_exactly_one(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer
) -> None:
    settings = _settings(tmp_path, engine, slack_server)
    now = utcnow()
    silence = _silence(settings, engine, now, rule="nvidia-drop", duration="90m")
    _negative_news(engine, now)
    rules, deliverer = RuleEngine(settings, engine), Deliverer(settings, engine)

    # Fired and a reminder while silenced: both in the history with the silence's id, neither sent.
    rules.evaluate(now + MIN)
    rules.evaluate(now + 32 * MIN)
    deliverer.deliver_due(now + 32 * MIN)
    assert _events(engine) == [("fired", silence.id, False), ("reminder", silence.id, False)]
    assert slack_server.posts() == []

    # Still silenced a minute before the end: that reminder is held back too.
    rules.evaluate(now + 89 * MIN)
    assert _events(engine)[2:] == [("reminder", silence.id, False)]

    # The silence ends while the alert still fires: one notice, at the next evaluation, and only one.
    rules.evaluate(now + 91 * MIN)
    rules.evaluate(now + 92 * MIN)
    RuleEngine(settings, engine).evaluate(now + 93 * MIN)  # a restarted process owes nothing either
    deliverer.deliver_due(now + 93 * MIN)
    deliverer.deliver_due(now + 94 * MIN)
    assert _events(engine)[3:] == [("reminder", None, True)]
    [post] = slack_server.posts()
    assert "nvidia-drop" in post.text
    section = post.blocks[1]["text"]["text"]
    assert f"Silence #{silence.id} ended" in section and "held back" in section

    # The history says why the fired event was never sent.
    with Session(engine) as session:
        fired_id = session.execute(sa.select(sa.func.min(AlertEvent.id))).scalar()
    config = str(_config_file(tmp_path, engine))
    shown = CliRunner().invoke(cli, ["--config", config, "alerts", "show", str(fired_id)])
    assert shown.exit_code == 0 and f"Silenced by silence {silence.id}: recorded, not sent" in shown.output

    # Afterwards the alert is an ordinary one again: its next reminder goes out on time.
    rules.evaluate(now + 122 * MIN)
    deliverer.deliver_due(now + 122 * MIN)
    assert [kind for kind, _, _ in _events(engine)][-1] == "reminder"
    assert len(slack_server.posts()) == 2


def test_expiring_early_sends_the_held_back_notice_and_a_silenced_resolve_stays_quiet(
    engine: sa.engine.Engine, tmp_path: Path, slack_server: SlackServer
) -> None:
    settings = _settings(tmp_path, engine, slack_server)
    now = utcnow()
    _negative_news(engine, now)
    rules, deliverer = RuleEngine(settings, engine), Deliverer(settings, engine)
    rules.evaluate(now)
    deliverer.deliver_due(now)
    assert len(slack_server.top_level()) == 1  # fired before any silence

    # Silenced after it fired: no reminder goes out ...
    silence = _silence(settings, engine, utcnow(), rule="nvidia-drop", topic="nvidia", duration="2h")
    rules.evaluate(now + 31 * MIN)
    deliverer.deliver_due(now + 31 * MIN)
    assert len(slack_server.posts()) == 1
    # ... until it is expired: then one (a reply in the alert's thread).
    silences.expire(engine, silence.id, utcnow())
    rules.evaluate(now + 32 * MIN)
    rules.evaluate(now + 33 * MIN)
    deliverer.deliver_due(now + 33 * MIN)
    assert [kind for kind, _, sent in _events(engine)] == ["fired", "reminder", "reminder"]
    [reply] = slack_server.replies(slack_server.top_level()[0].ts)
    assert "Silence #" in reply.blocks[1]["text"]["text"]

    # A resolve under a new silence is recorded and never sent, not even when that silence ends.
    quiet = _silence(settings, engine, utcnow(), severity="critical", duration="2h")
    for i in range(40):
        add_article(
            engine,
            title=f"Nvidia rallies on record demand {i}",
            topic="nvidia",
            sentiment=0.8,
            at=now + 34 * MIN - i * timedelta(seconds=5),
            url=f"https://news.test/pos-{i}",
        )
    rules.evaluate(now + 35 * MIN)
    silences.expire(engine, quiet.id, utcnow())
    rules.evaluate(now + 36 * MIN)
    deliverer.deliver_due(now + 36 * MIN)
    assert _events(engine)[-1] == ("resolved", quiet.id, False)
    assert len(slack_server.posts()) == 2
    assert slack_server.calls("chat.update") == []


def test_matchers_must_all_match(engine: sa.engine.Engine, tmp_path: Path) -> None:
    settings = _settings(tmp_path, engine)
    now = utcnow()
    _silence(settings, engine, now, rule="nvidia-drop", topic="tpu", duration="1h")  # other topic
    _silence(settings, engine, now, severity="info", duration="1h")  # other severity
    _silence(settings, engine, now, rule="nvidia-drop", start=(now + 2 * MIN).isoformat(), duration="1h")
    _negative_news(engine, now)
    RuleEngine(settings, engine).evaluate(now + MIN)  # the third has not started yet
    assert _events(engine) == [("fired", None, True)]


# ----------------------------------------------------------------------------- expiring: CLI and API


def test_cli_adds_lists_and_expires_a_silence(engine: sa.engine.Engine, tmp_path: Path) -> None:
    config = str(_config_file(tmp_path, engine))
    runner = CliRunner()
    added = runner.invoke(
        cli,
        [
            "--config", config, "silence", "add", "--rule", "nvidia-drop", "--severity", "critical",
            "--for", "2h", "--reason", "earnings call", "--by", "ana", "--format", "json",
        ],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    silence = json.loads(added.stdout)
    assert (
        silence["state"] == "active" and silence["rule"] == "nvidia-drop" and silence["created_by"] == "ana"
    )

    listed = runner.invoke(cli, ["--config", config, "silence", "list"])
    assert listed.exit_code == 0 and "earnings call" in listed.output and "active" in listed.output

    expired = runner.invoke(cli, ["--config", config, "silence", "expire", str(silence["id"])])
    assert expired.exit_code == 0 and f"silence {silence['id']} expired" in expired.output
    assert "(no rows)" in runner.invoke(cli, ["--config", config, "silence", "list"]).output
    ended = json.loads(
        runner.invoke(cli, ["--config", config, "silence", "list", "--all", "--format", "json"]).stdout
    )
    assert [(s["id"], s["state"]) for s in ended] == [(silence["id"], "expired")]
    assert ended[0]["expired_at"] is not None

    again = runner.invoke(cli, ["--config", config, "silence", "expire", str(silence["id"])])
    assert again.exit_code == 2 and "already ended" in again.output
    unknown = runner.invoke(cli, ["--config", config, "silence", "expire", "999"])
    assert unknown.exit_code == 2 and "no silence 999" in unknown.output


def test_api_lists_creates_and_expires_silences_behind_the_token(
    engine: sa.engine.Engine, tmp_path: Path
) -> None:
    client = TestClient(create_app(_settings(tmp_path, engine), engine))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"rule": "nvidia-drop", "duration": "2h", "reason": "earnings call", "created_by": "ana"}

    assert client.post("/api/silences", json=body).status_code == 401
    assert client.get("/api/silences").status_code == 401
    assert client.delete("/api/silences/1").status_code == 401

    created = client.post("/api/silences", json=body, headers=auth)
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["state"] == "active" and silence["topic"] is None
    assert [s["id"] for s in client.get("/api/silences", headers=auth).json()["items"]] == [silence["id"]]

    expired = client.delete(f"/api/silences/{silence['id']}", headers=auth)
    assert expired.status_code == 200 and expired.json()["state"] == "expired"
    assert client.get("/api/silences", headers=auth).json()["items"] == []
    assert [s["state"] for s in client.get("/api/silences?all=true", headers=auth).json()["items"]] == [
        "expired"
    ]
    again = client.delete(f"/api/silences/{silence['id']}", headers=auth)
    assert again.status_code == 409 and "already ended" in again.json()["error"]
    assert client.delete("/api/silences/999", headers=auth).status_code == 404


# ----------------------------------------------------------------------------- bad silences


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"duration": "2h"}, "matchers", "at least one matcher"),
        ({"rule": "  ", "topic": "", "duration": "2h"}, "matchers", "at least one matcher"),
        (
            {"rule": "nvidia-drop", "start": "2030-01-02T00:00Z", "until": "2030-01-01T00:00Z"},
            "ends_at",
            "is not after the start",
        ),
        ({"rule": "nvidia-drop", "until": "2020-01-01T00:00Z"}, "ends_at", "is not after the start"),
        ({"rule": "nvidia-drop"}, "ends_at", "say how long"),
        ({"rule": "nvidia-drop", "duration": "2h", "until": "2030-01-01T00:00Z"}, "ends_at", "not both"),
        ({"rule": "nvidia-drop", "until": "2h"}, "ends_at", "is a duration"),
        ({"rule": "nvidia-drop", "duration": "soon"}, "duration", "not a duration"),
        ({"rule": "nvidia-drp", "duration": "2h"}, "rule", "unknown rule 'nvidia-drp'"),
        ({"topic": "nvida", "duration": "2h"}, "topic", "unknown topic 'nvida'"),
        ({"severity": "fatal", "duration": "2h"}, "severity", "unknown severity"),
    ],
)
def test_bad_silences_are_refused_with_the_field_named(
    engine: sa.engine.Engine, tmp_path: Path, kwargs: dict, field: str, message: str
) -> None:
    settings = _settings(tmp_path, engine)
    with pytest.raises(SilenceError) as caught:
        _silence(settings, engine, utcnow(), **kwargs)
    assert caught.value.field == field and message in caught.value.message
    assert silences.list_silences(engine, utcnow(), include_ended=True) == []


def test_bad_silences_through_the_cli_and_the_api(engine: sa.engine.Engine, tmp_path: Path) -> None:
    config = str(_config_file(tmp_path, engine))
    runner = CliRunner()
    none = runner.invoke(cli, ["--config", config, "silence", "add", "--for", "2h", "--reason", "x"])
    assert none.exit_code == 2 and "at least one matcher" in none.output
    backwards = runner.invoke(
        cli,
        [
            "--config", config, "silence", "add", "--rule", "nvidia-drop", "--start", "2030-01-02T00:00Z",
            "--until", "2030-01-01T00:00Z", "--reason", "x",
        ],
    )  # fmt: skip
    assert backwards.exit_code == 2 and "is not after the start" in backwards.output
    assert "--for / --until" in backwards.output

    client = TestClient(create_app(_settings(tmp_path, engine), engine))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = client.post("/api/silences", json={"duration": "2h", "reason": "x"}, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(
        "invalid silence: matchers: a silence needs at least one matcher"
    )
    answer = client.post(
        "/api/silences",
        json={
            "rule": "nvidia-drop",
            "starts_at": "2030-01-02T00:00Z",
            "ends_at": "2030-01-01T00:00Z",
            "reason": "x",
        },
        headers=auth,
    )
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "ends_at"]
    assert client.get("/api/silences?all=true", headers=auth).json()["items"] == []
