"""The rule engine: evaluate every enabled rule, apply the lifecycle, write transitions with their outbox row.

One transaction per rule: the alert's new state, its AlertEvent and (for fired / reminder / resolved) the
Notification row commit together or not at all. The state write is conditional on the alert's `version`,
so when two processes evaluate at once exactly one of them records a transition.
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
from monitor.alerts.lifecycle import Decision, Snapshot, retire, step
from monitor.alerts.metrics import Measurement, clear_level, headline_order, measure
from monitor.config import AlertRuleConfig, Settings
from monitor.events import AlertFired, AlertResolved
from monitor.store import alerts as alert_store
from monitor.store import outbox
from monitor.store.tables import Alert
from monitor.store.windows import top_articles, topic_window_stats
from monitor.timeutil import as_utc, isoformat, utcnow

log = logging.getLogger(__name__)

AlertEventOut = AlertFired | AlertResolved
MAX_CONFLICT_RETRIES = 3
HEADLINES = 5


class RuleEngine:
    """Evaluates the configured rules against the stored article windows."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.rules = [rule for rule in settings.alerts if rule.enabled]

    def evaluate(self, now: datetime | None = None) -> list[AlertEventOut]:
        """Evaluate every rule at `now` (default: the current time); return the notified transitions."""
        now = as_utc(now) if now is not None else utcnow()
        out: list[AlertEventOut] = []
        for rule in self.rules:
            try:
                out.extend(self._evaluate_rule(rule, now))
            except Exception:  # one broken rule must not stop the others
                log.exception("rule evaluation failed", extra={"rule": rule.name, "topic": rule.topic})
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
                m = measure(rule, lambda start, end: topic_window_stats(session, rule.topic, start, end), now)
                decision = step(rule, before, m, now)
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
                        "articles": m.count,
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
            detail={"reason": decision.reason} if decision.reason else None,
        )
        assert event.id is not None
        episode_id = alert.fired_event_id
        if kind == "fired":
            values.update(fired_event_id=event.id, slack_ts=None, slack_channel=None)
            episode_id = event.id
        if decision.notify:
            headlines = []
            if m.count:
                order = headline_order(rule, resolved=kind == "resolved")
                headlines = top_articles(session, rule.topic, m.window_start, m.window_end, order, HEADLINES)
            payload = rule_payload(rule, m, kind, alert.fingerprint, now, decision)
            payload.update(
                episode_event_id=episode_id,
                fired_at=isoformat(decision.after.fired_at),
                headline_order=headline_order(rule, resolved=kind == "resolved"),
                headlines=[
                    {
                        "title": h.title,
                        "url": h.url,
                        "source": h.source,
                        "score": round(h.sentiment, 4),
                        "label": h.label,
                        "happened_at": isoformat(h.happened_at),
                    }
                    for h in headlines
                ],
            )
            outbox.enqueue(
                session,
                alert_event_id=event.id,
                fingerprint=alert.fingerprint,
                kind=kind,
                payload=payload,
                now=now,
            )
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
                if a.fingerprint not in live
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
                    detail={"reason": decision.reason},
                )
                if decision.notify:
                    payload = self._orphan_payload(session, current, now)
                    outbox.enqueue(
                        session,
                        alert_event_id=event.id,  # type: ignore[arg-type]
                        fingerprint=current.fingerprint,
                        kind="resolved",
                        payload=payload,
                        now=now,
                    )
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
        )
        return base


def rule_payload(
    rule: AlertRuleConfig, m: Measurement, kind: str, fp: str, now: datetime, decision: Decision
) -> dict[str, Any]:
    """The facts a notification is rendered from (stored as the outbox row's JSON payload)."""
    return {
        "v": 1,
        "kind": kind,
        "key": _marker(fp),
        "fingerprint": fp,
        "rule": rule.name,
        "topic": rule.topic,
        "severity": rule.severity,
        "metric": rule.metric,
        "direction": rule.direction,
        "threshold": rule.threshold,
        "clear": rule.clear,
        "clear_level": clear_level(rule),
        "min_articles": rule.min_articles,
        "value": m.value,
        "count": m.count,
        "window_seconds": rule.window.total_seconds(),
        "window_start": isoformat(m.window_start),
        "window_end": isoformat(m.window_end),
        "baseline_seconds": rule.baseline.total_seconds() if rule.baseline is not None else None,
        "baseline_count": m.baseline_count,
        "baseline_value": m.baseline_value,
        "at": isoformat(now),
        "reason": decision.reason,
    }


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
