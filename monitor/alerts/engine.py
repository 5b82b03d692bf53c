"""The rule engine: evaluate every enabled rule, apply the lifecycle, write transitions with their outbox row.

One transaction per rule: the alert's new state, its AlertEvent and (for fired / reminder / resolved) the
Notification row commit together or not at all. The state write is conditional on the alert's `version`,
so when two processes evaluate at once exactly one of them records a transition.

Silences (monitor/alerts/silencing.py): a notified transition an active silence matches is recorded with the
silence's id and no outbox row; when the silence ends while the alert still fires, one reminder goes out.
Feed health (monitor/alerts/feedhealth.py) is evaluated here too, as a built-in rule per feed.

Windows count what each rule's `count` says (stories by default, see `monitor.store.windows`). Every
transition stores why it happened (`monitor.alerts.explain`) in its event's detail, and a notified one
carries the same facts in its outbox payload, which the message is rendered from.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor import metrics
from monitor.alerts import silencing
from monitor.alerts.explain import explain, last_notice
from monitor.alerts.lifecycle import Decision, Snapshot, retire, step
from monitor.alerts.metrics import Measurement, measure
from monitor.config import AlertRuleConfig, Settings
from monitor.events import AlertFired, AlertResolved
from monitor.notify.routing import Router
from monitor.store import alerts as alert_store
from monitor.store import outbox
from monitor.store.tables import Alert
from monitor.store.windows import WindowStats, coverage_total, topic_window_stats
from monitor.timeutil import as_utc, isoformat, utcnow

log = logging.getLogger(__name__)

AlertEventOut = AlertFired | AlertResolved
MAX_CONFLICT_RETRIES = 3


class LiveWindows:
    """What `measure` reads for one rule at `now`, from the database through the evaluating session."""

    def __init__(self, session: Session, rule: AlertRuleConfig, topics: list[str], now: datetime) -> None:
        self.session = session
        self.rule = rule
        self.topics = topics
        self.now = now

    def stats(self, start: datetime, end: datetime) -> WindowStats:
        """The rule's window or baseline. Publishers are counted only where `min_sources` reads them (the
        window itself), so an ordinary evaluation costs one query per window, as before."""
        sources = self.rule.min_sources > 0 and end == self.now
        return topic_window_stats(self.session, self.rule.topic, start, end, self.rule.count, sources)

    def total(self, start: datetime, end: datetime) -> int:
        """coverage_share's denominator: the window's stories (articles) on any configured topic."""
        return coverage_total(self.session, self.topics, start, end, self.rule.count)


class RuleEngine:
    """Evaluates the configured rules against the stored article windows."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.rules = [rule for rule in settings.alerts if rule.enabled]
        self.topics = list(settings.topics)
        self.router = Router(settings)  # which receivers get each notice (`routes:`)
        from monitor.alerts.feedhealth import FeedHealth  # it builds on this module's helpers

        self.feed_health = FeedHealth(settings, engine)

    def evaluate(self, now: datetime | None = None) -> list[AlertEventOut]:
        """Evaluate every rule at `now` (default: the current time); return the notified transitions."""
        now = as_utc(now) if now is not None else utcnow()
        out: list[AlertEventOut] = []
        for rule in self.rules:
            try:
                out.extend(self._evaluate_rule(rule, now))
            except Exception:  # one broken rule must not stop the others
                log.exception("rule evaluation failed", extra={"rule": rule.name, "topic": rule.topic})
        out.extend(self.feed_health.evaluate(now))
        out.extend(self._retire_orphans(now))
        return out

    # ------------------------------------------------------------------ one rule

    def _evaluate_rule(self, rule: AlertRuleConfig, now: datetime) -> list[AlertEventOut]:
        fp = alert_store.fingerprint(rule.name, rule.topic)
        alert_store.ensure_alert(self.engine, fp, rule.name, rule.topic)
        for _ in range(MAX_CONFLICT_RETRIES):
            with Session(self.engine, expire_on_commit=False) as session:
                alert = alert_store.get_alert(session, fp)
                assert alert is not None
                before = _snapshot(alert)
                windows = LiveWindows(session, rule, self.topics, now)
                m = measure(rule, windows.stats, now, windows.total)
                decision = silencing.release(session, alert, step(rule, before, m, now), rule.severity, now)
                values: dict[str, Any] = {
                    "value": m.value,
                    "article_count": m.count,
                    "threshold": rule.threshold,
                    "last_evaluated_at": now,
                    **_state_values(decision.after),
                }
                event_id = None
                if decision.event is not None:
                    event_id = self._record(session, rule, alert, decision, m, now, values)
                if not alert_store.update_alert(session, fp, alert.version, **values):
                    session.rollback()
                    log.info("alert changed concurrently; re-evaluating", extra={"rule": rule.name})
                    continue
                session.commit()
            if decision.event is not None:
                metrics.record_alert_transition(rule.name, decision.event)
                log.info(
                    "alert %s",
                    decision.event,
                    extra={
                        "rule": rule.name,
                        "topic": rule.topic,
                        "fingerprint": fp,
                        "value": m.value,
                        "threshold": rule.threshold,
                        "count": m.count,
                        "unit": rule.count,
                        "articles": m.articles if m.articles is not None else m.count,
                        "event_id": event_id,
                    },
                )
            return _public_events(decision, fp, rule.name, rule.topic, m.value, rule.threshold, now)
        log.warning("alert kept changing concurrently; skipped this round", extra={"rule": rule.name})
        return []

    def _record(
        self,
        session: Session,
        rule: AlertRuleConfig,
        alert: Alert,
        decision: Decision,
        m: Measurement,
        now: datetime,
        values: dict[str, Any],
    ) -> int:
        """Add the AlertEvent (and its outbox row) for a transition; returns the event id."""
        kind = decision.event
        assert kind is not None
        facts = explain(session, rule, m, kind, decision.reason, now, last_notice(session, alert))
        silenced = silencing.annotate(session, alert, facts, now) if decision.notify else None
        event = alert_store.add_event(
            session,
            fp=alert.fingerprint,
            rule=rule.name,
            topic=rule.topic,
            kind=kind,
            at=now,
            value=m.value,
            threshold=rule.threshold,
            article_count=m.count,
            detail=facts,
        )
        assert event.id is not None
        episode_id = alert.fired_event_id
        if kind == "fired":
            values.update(fired_event_id=event.id, message_id=None, message_channel=None)
            episode_id = event.id
        if decision.notify and silenced is None:
            payload = {
                **facts,
                **delivery_facts(alert.fingerprint),
                "episode_event_id": episode_id,
                "fired_at": isoformat(decision.after.fired_at),
            }
            enqueue_notice(session, event.id, alert.fingerprint, kind, payload, now, self.router)
        return event.id

    # ------------------------------------------------------------------ removed / disabled rules

    def _retire_orphans(self, now: datetime) -> list[AlertEventOut]:
        """Alerts still pending or firing whose rule is gone or disabled: cancel or resolve them."""
        live = {alert_store.fingerprint(rule.name, rule.topic) for rule in self.rules}
        out: list[AlertEventOut] = []
        with Session(self.engine, expire_on_commit=False) as session:
            orphans = [
                a
                for a in alert_store.alerts_in_states(session, ("pending", "firing"))
                if a.fingerprint not in live and not self.feed_health.owns(a)
            ]
        for alert in orphans:
            with Session(self.engine, expire_on_commit=False) as session:
                current = alert_store.get_alert(session, alert.fingerprint)
                if current is None:
                    continue
                decision = retire(_snapshot(current), now)
                if decision.event is None:
                    continue
                values: dict[str, Any] = {"last_evaluated_at": now, **_state_values(decision.after)}
                detail: dict[str, Any] = {"reason": decision.reason}
                payload = self._orphan_payload(session, current, now) if decision.notify else None
                if payload is not None and silencing.annotate(session, current, payload, now) is not None:
                    detail["silenced_by"], payload = payload["silenced_by"], None
                event = alert_store.add_event(
                    session,
                    fp=current.fingerprint,
                    rule=current.rule,
                    topic=current.topic,
                    kind=decision.event,
                    at=now,
                    value=current.value,
                    threshold=current.threshold,
                    article_count=current.article_count,
                    detail=detail,
                )
                if payload is not None:
                    fp = current.fingerprint
                    enqueue_notice(session, event.id, fp, "resolved", payload, now, self.router)  # type: ignore[arg-type]
                if not alert_store.update_alert(session, current.fingerprint, current.version, **values):
                    session.rollback()
                    continue
                session.commit()
            metrics.record_alert_transition(current.rule, decision.event)
            log.info(
                "alert %s: rule removed or disabled",
                decision.event,
                extra={"rule": current.rule, "topic": current.topic, "fingerprint": current.fingerprint},
            )
            out.extend(
                _public_events(
                    decision,
                    current.fingerprint,
                    current.rule,
                    current.topic,
                    current.value,
                    current.threshold,
                    now,
                )
            )
        return out

    def _orphan_payload(self, session: Session, alert: Alert, now: datetime) -> dict[str, Any]:
        """The resolved notice of a retired rule, from the facts of its fired message (the rule is gone)."""
        base: dict[str, Any] = {}
        if alert.fired_event_id is not None:
            fired = outbox.for_event(session, alert.fired_event_id)
            if fired is not None:
                base = json.loads(fired.payload)
        base.setdefault("metric", "unknown")
        base.setdefault("direction", "below")
        base.setdefault("threshold", alert.threshold)
        base.setdefault("window_seconds", 0)
        base.setdefault("severity", "warning")
        base.update(
            v=1,
            kind="resolved",
            key=_marker(alert.fingerprint),
            fingerprint=alert.fingerprint,
            rule=alert.rule,
            topic=alert.topic,
            value=alert.value,
            count=alert.article_count,
            at=isoformat(now),
            reason="rule_removed",
            episode_event_id=alert.fired_event_id,
            fired_at=isoformat(alert.fired_at),
            headlines=[],
            # Nothing was measured: the fired message's evidence must not read as the current window's.
            stories=None,
            articles=None,
            sources=None,
            coverage_total=None,
            previous=None,
            new_stories=None,
        )
        return base


def enqueue_notice(
    session: Session,
    event_id: int,
    fp: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    router: Router | None = None,
) -> None:
    """Queue the notification(s) of a notified transition, inside its transaction. Every alert's notices go
    through here, the built-in feed-health alerts' too (monitor/alerts/feedhealth.py), so they are all
    delivered (and routed) alike: one outbox row per receiver the `router` sends the payload's rule, topic
    and severity to (monitor/notify/routing.py); without a router, the `default` receiver's row alone."""
    if router is None:
        outbox.enqueue(session, alert_event_id=event_id, fingerprint=fp, kind=kind, payload=payload, now=now)
        return
    router.enqueue(session, alert_event_id=event_id, fingerprint=fp, kind=kind, payload=payload, now=now)


def delivery_facts(fp: str) -> dict[str, Any]:
    """What delivery needs beside the facts: the payload version, the alert, and a unique marker."""
    return {"v": 1, "key": _marker(fp), "fingerprint": fp}


def _marker(fp: str) -> str:
    """A unique key carried in the Slack message metadata: finds an earlier post after a crash."""
    return f"{fp}-{uuid.uuid4().hex[:12]}"


def _snapshot(alert: Alert) -> Snapshot:
    state = alert.state if alert.state in ("inactive", "pending", "firing", "resolved") else "inactive"
    return Snapshot(
        state=state,  # type: ignore[arg-type]
        pending_since=alert.pending_since,
        fired_at=alert.fired_at,
        resolved_at=alert.resolved_at,
        last_notified_at=alert.last_notified_at,
    )


def _state_values(s: Snapshot) -> dict[str, Any]:
    return {
        "state": s.state,
        "pending_since": s.pending_since,
        "fired_at": s.fired_at,
        "resolved_at": s.resolved_at,
        "last_notified_at": s.last_notified_at,
    }


def _public_events(
    decision: Decision,
    fp: str,
    rule: str,
    topic: str,
    value: float | None,
    threshold: float | None,
    now: datetime,
) -> list[AlertEventOut]:
    if decision.event in ("fired", "reminder"):
        return [
            AlertFired(
                fp,
                rule,
                topic,
                value if value is not None else float("nan"),
                threshold if threshold is not None else float("nan"),
                now,
                reminder=decision.event == "reminder",
            )
        ]
    if decision.event == "resolved":
        return [AlertResolved(fp, rule, topic, value, now)]
    return []
