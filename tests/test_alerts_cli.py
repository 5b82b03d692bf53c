"""`monitor alerts`, `monitor alerts redeliver`, `monitor rules list` and `monitor rules test`."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from alerthelp import add_article
from click.testing import CliRunner
from conftest import TOPICS

from monitor.alerts import RuleEngine
from monitor.cli import cli
from monitor.config import load_config
from monitor.store.db import create_db_engine
from monitor.store.migrate import upgrade
from monitor.store.tables import Notification
from monitor.timeutil import utcnow

MIN = timedelta(minutes=1)
RULES = [
    {
        "name": "nvidia-drop",
        "topic": "nvidia",
        "metric": "mean_sentiment",
        "window": "2h",
        "below": -0.3,
        "clear": -0.1,
        "min_articles": 3,
        "for": "20m",
        "repeat": "6h",
        "severity": "critical",
    },
    {
        "name": "tpu-up",
        "topic": "tpu",
        "metric": "mean_sentiment",
        "window": "2h",
        "above": 0.4,
        "clear": 0.2,
        "min_articles": 3,
        "enabled": False,
    },
]


def setup(tmp_path: Path):
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump({"database_url": f"sqlite:///{tmp_path / 'm.db'}", "topics": TOPICS, "alerts": RULES}),
        encoding="utf-8",
    )
    engine = create_db_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    now = utcnow().replace(second=0, microsecond=0)
    # Two days ago: a negative run over three hours; yesterday: a positive run.
    start = now - timedelta(days=2)
    for i in range(12):
        add_article(
            engine, title=f"Nvidia falls {i}", topic="nvidia", sentiment=-0.7, at=start + i * 15 * MIN
        )
    for i in range(12):
        add_article(engine, title=f"TPU wins {i}", topic="tpu", sentiment=0.8, at=start + i * 15 * MIN)
    return config, engine, start


def run(config: Path, *args: str):
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result


def test_rules_test_replays_history_and_sends_nothing(tmp_path: Path) -> None:
    config, engine, start = setup(tmp_path)
    result = run(config, "rules", "test", "--since", "3d", "--format", "json")
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    assert [(e["rule"], e["event"]) for e in events] == [
        ("nvidia-drop", "fired"),
        ("nvidia-drop", "resolved"),
    ]
    fired_at = start + 2 * 15 * MIN + 20 * MIN  # the third article, then `for`
    assert events[0]["at"] == fired_at.isoformat().replace("+00:00", "Z")
    assert events[1]["at"] == (start + 11 * 15 * MIN + 2 * 60 * MIN).isoformat().replace("+00:00", "Z")
    with engine.connect() as connection:  # nothing written
        assert connection.exec_driver_sql("select count(*) from alert_events").scalar() == 0
        assert connection.exec_driver_sql("select count(*) from notifications").scalar() == 0

    table = run(config, "rules", "test", "--since", "3d")
    assert "nvidia-drop: fired 1 time(s), firing" in table.output and "nvidia-drop" in table.output
    # A disabled rule replays when named.
    named = run(
        config, "rules", "test", "--since", "3d", "--rule", "tpu-up", "--all-events", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(named.stdout)))
    assert [(r["rule"], r["event"]) for r in rows] == [("tpu-up", "fired"), ("tpu-up", "resolved")]
    bad = CliRunner().invoke(cli, ["--config", str(config), "rules", "test", "--rule", "nope"])
    assert bad.exit_code == 2 and "unknown rule(s): nope" in bad.output
    # A start so early that the window before it reaches past year 1: a usage error, not a traceback.
    early = CliRunner().invoke(cli, ["--config", str(config), "rules", "test", "--since", "0001-01-01"])
    assert early.exit_code == 2 and "too far back" in early.output


def test_rules_list(tmp_path: Path) -> None:
    config, _, _ = setup(tmp_path)
    result = run(config, "rules", "list", "--format", "json")
    rows = json.loads(result.stdout)
    assert rows[0]["condition"] == "below -0.3" and rows[0]["for"] == "20m" and rows[0]["window"] == "2h"
    assert rows[1]["enabled"] is False


def test_alerts_lists_episodes_with_state_filter(tmp_path: Path) -> None:
    config, engine, start = setup(tmp_path)
    rules = RuleEngine(load_config(config), engine)
    t = start
    while t < start + timedelta(hours=6):
        rules.evaluate(t)
        t += 10 * MIN
    # A second episode, still firing now.
    now = utcnow()
    for i in range(4):
        add_article(
            engine, title=f"Nvidia slump {i}", topic="nvidia", sentiment=-0.8, at=now - (40 - i) * MIN
        )
    rules.evaluate(now - 30 * MIN)
    rules.evaluate(now - 5 * MIN)

    result = run(config, "alerts", "--since", "3d", "--format", "json")
    assert result.exit_code == 0, result.output
    episodes = json.loads(result.stdout)
    assert [e["state"] for e in episodes] == ["resolved", "firing"]
    assert episodes[0]["fired_at"] and episodes[0]["resolved_at"] and episodes[0]["notification"] == "pending"
    assert episodes[0]["reason"] == "no_articles"  # the run ended and its window emptied
    firing = run(config, "alerts", "--since", "1h", "--state", "firing", "--format", "json")
    assert [e["state"] for e in json.loads(firing.stdout)] == ["firing"]
    assert (
        json.loads(run(config, "alerts", "--since", "1h", "--state", "resolved", "--format", "json").stdout)
        == []
    )
    table = run(config, "alerts", "--since", "3d")
    assert "nvidia-drop" in table.output and "firing" in table.output

    with engine.begin() as connection:
        connection.exec_driver_sql("update notifications set status = 'failed'")
    result = run(config, "alerts", "redeliver")
    assert "1 failed notification(s) queued again" in result.output
    with engine.connect() as connection:
        statuses = connection.exec_driver_sql("select status from notifications order by id").scalars().all()
    # The first episode's fired and resolved notices are the past now: only the open episode's goes again.
    assert statuses == ["failed", "failed", "pending"]
    assert Notification.__tablename__ == "notifications"


def _two_failed(engine: sa.engine.Engine, tmp_path: Path) -> tuple[Path, int, int]:
    """Config for `engine`, and two failed `fired` notifications: nvidia-drop's two days old, tpu-up's new."""
    rules = [{**RULES[0], "for": "0s"}, {**RULES[1], "enabled": True}]
    config = tmp_path / "monitor.yaml"
    url = engine.url.render_as_string(hide_password=False)
    config.write_text(
        yaml.safe_dump({"database_url": url, "topics": TOPICS, "alerts": rules}), encoding="utf-8"
    )
    now = utcnow()
    for i in range(4):
        add_article(
            engine, title=f"Nvidia falls {i}", topic="nvidia", sentiment=-0.7, at=now - (30 - i) * MIN
        )
        add_article(engine, title=f"TPU wins {i}", topic="tpu", sentiment=0.8, at=now - (30 - i) * MIN)
    assert len(RuleEngine(load_config(config), engine).evaluate(now)) == 2
    table = Notification.__table__
    with engine.begin() as connection:
        connection.execute(table.update().values(status="failed", last_error="Slack rejected the message"))
        found = connection.execute(sa.select(table.c.id, table.c.payload))
        rows = {json.loads(payload)["rule"]: row_id for row_id, payload in found}
        connection.execute(
            table.update().where(table.c.id == rows["nvidia-drop"]).values(created_at=now - timedelta(days=2))
        )
    return config, rows["nvidia-drop"], rows["tpu-up"]


def _statuses(engine: sa.engine.Engine) -> dict[int, str]:
    c = Notification.__table__.c
    with engine.connect() as connection:
        return {row.id: row.status for row in connection.execute(sa.select(c.id, c.status))}


def test_redeliver_filters_by_id_rule_and_since(engine: sa.engine.Engine, tmp_path: Path) -> None:
    config, nvidia, tpu = _two_failed(engine, tmp_path)

    dry = run(config, "alerts", "redeliver", "--dry-run")
    assert dry.exit_code == 0 and dry.output.count("would queue") == 2 and "Slack rejected" in dry.output
    assert set(_statuses(engine).values()) == {"failed"}  # a dry run changes nothing

    since = run(config, "alerts", "redeliver", "--since", "1d")
    assert "1 failed notification(s) queued again" in since.output
    assert _statuses(engine) == {nvidia: "failed", tpu: "pending"}

    assert "(no rows)" in run(config, "alerts", "redeliver", "--rule", "tpu-up").output  # tpu-up's is queued
    for args, message in (
        (("--rule", "nope"), "unknown rule(s): nope"),
        (("--id", "999"), "no notification 999"),
        (("--id", str(tpu)), f"notification {tpu} is pending, not failed"),
        (("--id", str(nvidia), "--rule", "tpu-up"), f"notification {nvidia} does not match --rule/--since"),
    ):
        bad = CliRunner().invoke(cli, ["--config", str(config), "alerts", "redeliver", *args])
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)
    assert _statuses(engine)[nvidia] == "failed"

    by_id = run(config, "alerts", "redeliver", "--id", str(nvidia), "--rule", "nvidia-drop")
    assert "1 failed notification(s) queued again" in by_id.output
    assert _statuses(engine) == {nvidia: "pending", tpu: "pending"}


def test_alerts_show_why_a_notification_failed(engine: sa.engine.Engine, tmp_path: Path) -> None:
    config, _, _ = _two_failed(engine, tmp_path)
    episodes = json.loads(run(config, "alerts", "--format", "json").stdout)
    assert [(e["notification"], e["notification_error"]) for e in episodes] == [
        ("failed", "Slack rejected the message")
    ] * 2
    table = run(config, "alerts")
    assert "notification_error" in table.output and "Slack rejected the message" in table.output
    rows = list(csv.DictReader(io.StringIO(run(config, "alerts", "--format", "csv").stdout)))
    assert rows[0]["notification_error"] == "Slack rejected the message"
