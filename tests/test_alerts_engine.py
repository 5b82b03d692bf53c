"""The rule engine on real databases: transitions, history rows and outbox rows in one transaction."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alerthelp import add_article
from conftest import make_settings
from sqlmodel import Session

from monitor.alerts import RuleEngine, fingerprint, replay
from monitor.events import AlertFired, AlertResolved
from monitor.store import alerts as alert_store
from monitor.store.tables import Alert, AlertEvent, Notification
from monitor.store.windows import top_articles, topic_window_stats

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

RULE = {
    "name": "nvidia-drop",
    "topic": "nvidia",
    "metric": "mean_sentiment",
    "window": "6h",
    "below": -0.3,
    "clear": -0.1,
    "min_articles": 5,
    "for": "15m",
    "repeat": "6h",
    "severity": "critical",
}


def settings_for(tmp_path: Path, *rules: dict) -> object:
    return make_settings(tmp_path, alerts=list(rules) or [RULE])


def rows(engine: sa.engine.Engine, table: type) -> list:
    with Session(engine) as session:
        return list(session.execute(sa.select(table).order_by(sa.text("1"))).scalars())


def negative_run(engine: sa.engine.Engine, start: datetime, n: int = 6, topic: str = "nvidia") -> None:
    for i in range(n):
        add_article(
            engine,
            title=f"Nvidia slides as Google pitches TPUs to Meta, part {i}",
            topic=topic,
            sentiment=-0.5 - i * 0.05,
            at=start + i * MIN,
            url=f"https://news.test/neg/{i}",
            source="Example News",
        )


def test_window_stats_and_headlines(engine: sa.engine.Engine) -> None:
    for i, s in enumerate([-0.9, -0.5, 0.1, 0.7]):
        add_article(
            engine, title=f"t{i}", topic="nvidia", sentiment=s, at=T0 + i * MIN, url=f"https://x.test/{i}"
        )
    add_article(engine, title="other topic", topic="tpu", sentiment=0.9, at=T0)
    with Session(engine) as session:
        stats = topic_window_stats(session, "nvidia", T0 - MIN, T0 + 10 * MIN)
        assert (stats.count, stats.negative, stats.positive) == (4, 2, 1)
        assert abs(stats.mean - (-0.15)) < 1e-9
        assert topic_window_stats(session, "nvidia", T0, T0 + 10 * MIN).count == 3  # left-open
        neg = top_articles(session, "nvidia", T0 - MIN, T0 + 10 * MIN, "most_negative", 2)
        assert [h.title for h in neg] == ["t0", "t1"] and neg[0].source == "test-feed"
        pos = top_articles(session, "nvidia", T0 - MIN, T0 + 10 * MIN, "most_positive", 1)
        assert [h.title for h in pos] == ["t3"]
        recent = top_articles(session, "nvidia", T0 - MIN, T0 + 10 * MIN, "recent", 5)
        assert [h.title for h in recent] == ["t3", "t2", "t1", "t0"]


def test_negative_run_pends_fires_once_repeats_and_resolves(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rules = RuleEngine(settings_for(tmp_path), engine)
    fp = fingerprint("nvidia-drop", "nvidia")
    negative_run(engine, T0)
    last = T0 + 5 * MIN

    assert rules.evaluate(last) == []  # pending
    assert rules.evaluate(last + 10 * MIN) == []  # still pending
    fired = rules.evaluate(last + 15 * MIN)
    assert len(fired) == 1 and isinstance(fired[0], AlertFired) and not fired[0].reminder
    assert fired[0].fingerprint == fp and fired[0].value < -0.3
    for minute in range(16, 6 * 60, 30):  # evaluations keep coming: nothing new until `repeat`
        assert rules.evaluate(last + minute * MIN) == []

    # Keep the story alive so the window does not empty, then the reminder after 6h.
    negative_run(engine, last + 5 * 60 * MIN)
    reminder = rules.evaluate(last + (15 + 6 * 60) * MIN)
    assert len(reminder) == 1 and reminder[0].reminder

    # A positive run pulls the mean past `clear`.
    for i in range(30):
        add_article(
            engine,
            title=f"Nvidia rebounds on record orders {i}",
            topic="nvidia",
            sentiment=0.6,
            at=last + (6 * 60 + 20 + i) * MIN,
            url=f"https://news.test/pos/{i}",
        )
    resolved = rules.evaluate(last + (6 * 60 + 50) * MIN)
    assert len(resolved) == 1 and isinstance(resolved[0], AlertResolved)
    assert rules.evaluate(last + (6 * 60 + 51) * MIN) == []

    events = rows(engine, AlertEvent)
    assert [e.kind for e in events] == ["pending", "fired", "reminder", "resolved"]
    notes = rows(engine, Notification)
    assert [n.kind for n in notes] == ["fired", "reminder", "resolved"]
    assert [n.alert_event_id for n in notes] == [e.id for e in events[1:]]  # one per notified transition
    alert = rows(engine, Alert)[0]
    assert alert.state == "resolved" and alert.fired_event_id == events[1].id

    payload = json.loads(notes[0].payload)
    assert payload["rule"] == "nvidia-drop" and payload["count"] == 6 and payload["threshold"] == -0.3
    assert payload["headline_order"] == "most_negative"
    scores = [h["score"] for h in payload["headlines"]]
    assert len(scores) == 5 and scores == sorted(scores) and scores[0] == -0.75
    resolved_payload = json.loads(notes[2].payload)
    assert resolved_payload["reason"] == "cleared" and resolved_payload["episode_event_id"] == events[1].id
    assert resolved_payload["headline_order"] == "most_positive"


def test_alert_resolves_when_the_news_goes_quiet(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rules = RuleEngine(settings_for(tmp_path, {**RULE, "for": "0s", "window": "1h"}), engine)
    negative_run(engine, T0)
    assert len(rules.evaluate(T0 + 10 * MIN)) == 1
    assert rules.evaluate(T0 + 62 * MIN) == []  # a few articles left: holds
    out = rules.evaluate(T0 + 66 * MIN)  # the window is empty
    assert len(out) == 1 and isinstance(out[0], AlertResolved) and out[0].value is None
    assert json.loads(rows(engine, AlertEvent)[-1].detail)["reason"] == "no_articles"


def test_insufficient_evidence_does_not_fire(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rules = RuleEngine(settings_for(tmp_path, {**RULE, "for": "0s"}), engine)
    negative_run(engine, T0, n=4)
    assert rules.evaluate(T0 + 10 * MIN) == []
    alert = rows(engine, Alert)[0]
    assert alert.state == "inactive" and alert.article_count == 4 and alert.value < -0.3
    assert rows(engine, Notification) == []


def test_removed_rule_resolves_its_firing_alert(engine: sa.engine.Engine, tmp_path: Path) -> None:
    negative_run(engine, T0)
    assert len(RuleEngine(settings_for(tmp_path, {**RULE, "for": "0s"}), engine).evaluate(T0 + 10 * MIN)) == 1
    other = {**RULE, "name": "tpu-up", "topic": "tpu", "below": None, "above": 0.5, "clear": 0.2}
    out = RuleEngine(settings_for(tmp_path, other), engine).evaluate(T0 + 11 * MIN)
    assert len(out) == 1 and isinstance(out[0], AlertResolved) and out[0].rule == "nvidia-drop"
    last = rows(engine, Notification)[-1]
    assert last.kind == "resolved" and json.loads(last.payload)["reason"] == "rule_removed"
    assert json.loads(last.payload)["metric"] == "mean_sentiment"  # facts carried over from the fired message


def test_concurrent_evaluators_record_one_transition(engine: sa.engine.Engine, tmp_path: Path) -> None:
    negative_run(engine, T0)
    settings = settings_for(tmp_path, {**RULE, "for": "0s"})
    engines = [RuleEngine(settings, engine) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list = []

    def work(rules: RuleEngine) -> None:
        barrier.wait()
        results.extend(rules.evaluate(T0 + 10 * MIN))

    threads = [threading.Thread(target=work, args=(r,)) for r in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1
    assert [e.kind for e in rows(engine, AlertEvent)] == ["fired"]
    assert len(rows(engine, Notification)) == 1


def test_transition_and_outbox_row_commit_together(
    engine: sa.engine.Engine, tmp_path: Path, monkeypatch
) -> None:
    """If writing the outbox row fails, the transition is not recorded either (and happens next time)."""
    negative_run(engine, T0)
    rules = RuleEngine(settings_for(tmp_path, {**RULE, "for": "0s"}), engine)
    from monitor.store import outbox

    real = outbox.enqueue

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox, "enqueue", broken)
    assert rules.evaluate(T0 + 10 * MIN) == []
    assert rows(engine, AlertEvent) == [] and rows(engine, Alert)[0].state == "inactive"
    monkeypatch.setattr(outbox, "enqueue", real)
    assert len(rules.evaluate(T0 + 11 * MIN)) == 1
    assert len(rows(engine, AlertEvent)) == 1 and len(rows(engine, Notification)) == 1


def test_replay_matches_live_evaluation(engine: sa.engine.Engine, tmp_path: Path) -> None:
    """`rules test` over stored history gives the transitions live evaluation makes on the same data."""
    rule = {**RULE, "window": "2h", "min_articles": 3, "for": "20m", "repeat": "3h"}
    pattern = [0.1, 0.0, 0.2] * 6 + [-0.6, -0.7, -0.5, -0.1] * 8 + [0.0, -0.35] * 5 + [0.5] * 10 + [-0.8] * 2
    for i, s in enumerate(pattern):
        add_article(engine, title=f"a{i}", topic="nvidia", sentiment=s, at=T0 + i * 20 * MIN)
    settings = settings_for(tmp_path, rule)
    end = T0 + (len(pattern) * 20 + 240) * MIN
    replayed = [(e.kind, e.at) for e in replay(settings, engine, T0, end)]
    # The negative phase holds long enough: its first pending turns into fired exactly `for` (20m) later.
    first_pending = next(at for kind, at in replayed if kind == "pending")
    assert replayed[replayed.index(("pending", first_pending)) + 1] == ("fired", first_pending + 20 * MIN)

    rules = RuleEngine(settings, engine)
    fp = alert_store.fingerprint("nvidia-drop", "nvidia")
    t = T0
    while t <= end:
        rules.evaluate(t)
        t += 10 * MIN
    with Session(engine) as session:
        live = [(e.kind, e.at) for e in alert_store.events(session, fingerprints=[fp])]
    assert live == replayed
    assert {kind for kind, _ in live} == {"pending", "fired", "reminder", "resolved", "cancelled"}
