"""Feed health: the built-in rule that raises an alert when a feed keeps failing or goes silent.

One alert per configured feed: rule `feed-health`, topic = the feed's name, fingerprint of the two like any
rule's, so it is deduplicated, silenced and listed (`monitor alerts`) like any other alert and delivered
through the same outbox. It is evaluated with the rules (`RuleEngine.evaluate`: every `evaluate_every` and
after each pass) through the same lifecycle (`advance`: firing at once, a reminder every `repeat`, resolved
when the feed recovers), the same version-checked state write, and one transaction for the new state, the
event and its outbox row.

A feed is broken when (checked in this order):
- failing: its last `failures` polls failed (`feeds.consecutive_errors`, counted by the collector);
- silent: no new article was collected from it for `silent_for` (since its newest article, or since the feed
  was first seen when it never brought one).
It recovers when neither holds: a successful poll resets the error streak, a new article ends the silence.
A feed removed from the configuration, disabled, or with `health.enabled: false` resolves its open alert
(reason `rule_removed`). A feed never polled has no row yet and nothing to judge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor import metrics
from monitor.alerts import silencing
from monitor.alerts.engine import (
    AlertEventOut,
    _public_events,
    _snapshot,
    _state_values,
    delivery_facts,
    enqueue_notice,
)
from monitor.alerts.explain import stored_detail
from monitor.alerts.lifecycle import Decision, advance, retire
from monitor.config import FEED_HEALTH_RULE, FeedConfig, FeedHealthConfig, Settings
from monitor.logs import redact
from monitor.notify.feed_message import render
from monitor.notify.routing import Router
from monitor.store import alerts as alert_store
from monitor.store.tables import Alert, AlertEvent, Article, Feed
from monitor.timeutil import as_utc, isoformat

log = logging.getLogger(__name__)

Problem = Literal["failing", "silent"]
REASON_RECOVERED = "recovered"
MAX_CONFLICT_RETRIES = 3
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class FeedCheck:
    """One feed at one moment: what its row and articles say, and whether that is broken under its limits."""

    feed: str
    url: str
    health: FeedHealthConfig
    at: datetime
    problem: Problem | None
    consecutive_errors: int
    last_status: str | None
    last_http_status: int | None
    last_error: str | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_new_at: datetime | None  # the newest article's collection time
    known_since: datetime | None  # when the feed was first seen: "silent since" when it never brought one

    @property
    def silent_since(self) -> datetime | None:
        return self.last_new_at or self.known_since

    @property
    def value(self) -> float:
        """What `monitor alerts` shows: failed polls in a row, or (silent) days without anything new."""
        if self.problem == "silent" and self.silent_since is not None:
            return round((self.at - as_utc(self.silent_since)).total_seconds() / DAY, 2)
        return float(self.consecutive_errors)

    @property
    def threshold(self) -> float:
        """The limit `value` is compared with: `failures`, or `silent_for` in days."""
        if self.problem == "silent":
            return round(self.health.silent_for.total_seconds() / DAY, 2)
        return float(self.health.failures)

    def facts(self) -> dict[str, Any]:
        """The observation, JSON-ready: stored with the transition and rendered into its message."""
        return {
            "rule": FEED_HEALTH_RULE,
            "topic": self.feed,
            "feed": self.feed,
            "host": _host(self.url),  # never the whole URL: a query string may carry a key
            "severity": self.health.severity,
            "metric": "feed_health",
            "problem": self.problem,
            "value": self.value,
            "threshold": self.threshold,
            "failures": self.health.failures,
            "silent_for_seconds": self.health.silent_for.total_seconds(),
            "consecutive_errors": self.consecutive_errors,
            "last_status": self.last_status,
            "last_http_status": self.last_http_status,
            "last_error": redact(self.last_error) if self.last_error else None,
            "last_polled_at": isoformat(self.last_polled_at),
            "last_success_at": isoformat(self.last_success_at),
            "last_new_at": isoformat(self.last_new_at),
            "silent_since": isoformat(self.silent_since),
        }


def judge(feed: FeedConfig, health: FeedHealthConfig, row: Any, now: datetime) -> FeedCheck:
    """Judge one feed's row (with its newest article, `row.last_new_at`) at `now` against its limits."""
    errors = int(row.consecutive_errors or 0)
    since = row.last_new_at or row.created_at
    problem: Problem | None = None
    if health.failures > 0 and errors >= health.failures:
        problem = "failing"
    elif health.silent_for > timedelta(0) and since is not None and now - as_utc(since) >= health.silent_for:
        problem = "silent"
    return FeedCheck(
        feed=feed.name,
        url=feed.url,
        health=health,
        at=now,
        problem=problem,
        consecutive_errors=errors,
        last_status=row.last_status,
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        last_polled_at=row.last_polled_at,
        last_success_at=row.last_success_at,
        last_new_at=row.last_new_at,
        known_since=row.created_at,
    )


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


class FeedHealth:
    """Evaluates the feed-health alert of every watched feed (called by `RuleEngine.evaluate`)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine = engine
        self.router = Router(settings)  # routed like any other alert (`routes:`, monitor/notify/routing.py)
        self.watched: dict[str, tuple[FeedConfig, FeedHealthConfig]] = {}
        for feed in settings.feeds:
            health = settings.feed_health.merged(feed.health)
            if feed.enabled and health.enabled:
                self.watched[feed.name] = (feed, health)

    @staticmethod
    def owns(alert: Alert) -> bool:
        """Feed-health alerts are retired here, not by the rule engine (their rule is built in)."""
        return alert.rule == FEED_HEALTH_RULE

    def evaluate(self, now: datetime) -> list[AlertEventOut]:
        out: list[AlertEventOut] = []
        for check in self.checks(now):
            try:
                out.extend(self._evaluate_feed(check, now))
            except Exception:  # one feed's alert must not stop the others
                log.exception("feed health evaluation failed", extra={"feed": check.feed})
        out.extend(self._retire(now))
        return out

    def checks(self, now: datetime) -> list[FeedCheck]:
        """Every watched feed that has a row (was polled at least once), judged at `now`. One query: the
        newest article per feed is a correlated max over the (feed_id, collected_at) index."""
        if not self.watched:
            return []
        feeds, articles = Feed.__table__.c, Article.__table__.c
        newest = sa.select(sa.func.max(articles.collected_at)).where(articles.feed_id == feeds.id)
        query = sa.select(
            feeds.name,
            feeds.consecutive_errors,
            feeds.last_status,
            feeds.last_http_status,
            feeds.last_error,
            feeds.last_polled_at,
            feeds.last_success_at,
            feeds.created_at,
            newest.scalar_subquery().label("last_new_at"),
        ).where(feeds.name.in_(list(self.watched)))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [judge(*self.watched[row.name], _aware(row), now) for row in rows]

    # ------------------------------------------------------------------ one feed

    def _evaluate_feed(self, check: FeedCheck, now: datetime) -> list[AlertEventOut]:
        fp = alert_store.fingerprint(FEED_HEALTH_RULE, check.feed)
        with Session(self.engine) as session:
            exists = alert_store.get_alert(session, fp) is not None
        if not exists:
            if check.problem is None:
                return []  # a healthy feed needs no alert row
            alert_store.ensure_alert(self.engine, fp, FEED_HEALTH_RULE, check.feed)

        def decide(session: Session, alert: Alert) -> Decision:
            decision = advance(
                _snapshot(alert),
                now,
                breach=check.problem is not None,
                clear=check.problem is None,
                repeat=check.health.repeat,
                clear_reason=REASON_RECOVERED,
            )
            return silencing.release(session, alert, decision, check.health.severity, now)

        return self._transition(fp, now, decide, lambda _session, _alert: check.facts())

    def _retire(self, now: datetime) -> list[AlertEventOut]:
        """Open feed-health alerts of feeds no longer watched: resolved (cancelled), reason rule_removed."""
        with Session(self.engine) as session:
            orphans = [
                a.fingerprint
                for a in alert_store.alerts_in_states(session, ("pending", "firing"))
                if self.owns(a) and a.topic not in self.watched
            ]
        out: list[AlertEventOut] = []
        for fp in orphans:
            out.extend(
                self._transition(fp, now, lambda _session, alert: retire(_snapshot(alert), now), _last_facts)
            )
        return out

    # ------------------------------------------------------------------ writing a transition

    def _transition(
        self,
        fp: str,
        now: datetime,
        decide: Callable[[Session, Alert], Decision],
        observe: Callable[[Session, Alert], dict[str, Any]],
    ) -> list[AlertEventOut]:
        """Apply `decide` to the alert and record the transition with its facts (`observe`), in one
        transaction whose state write is conditional on the alert's version (retried on a conflict)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            with Session(self.engine, expire_on_commit=False) as session:
                alert = alert_store.get_alert(session, fp)
                if alert is None:
                    return []
                decision = decide(session, alert)
                if decision.event is None:
                    return []  # nothing changed: no write
                facts = observe(session, alert)
                values: dict[str, Any] = {
                    "value": facts.get("value"),
                    "threshold": facts.get("threshold"),
                    "article_count": 0,
                    "last_evaluated_at": now,
                    **_state_values(decision.after),
                }
                silenced = self._record(session, alert, decision, facts, now, values)
                if not alert_store.update_alert(session, fp, alert.version, **values):
                    session.rollback()
                    continue
                session.commit()
            metrics.record_alert_transition(FEED_HEALTH_RULE, decision.event)
            log.info(
                "alert %s",
                decision.event,
                extra={
                    "rule": FEED_HEALTH_RULE,
                    "topic": alert.topic,
                    "fingerprint": fp,
                    "problem": facts.get("problem"),
                    "reason": decision.reason,
                    "silenced_by": silenced,
                },
            )
            return _public_events(
                decision, fp, FEED_HEALTH_RULE, alert.topic, facts.get("value"), facts.get("threshold"), now
            )
        log.warning("feed health alert kept changing concurrently; skipped this round", extra={"fp": fp})
        return []

    def _record(
        self,
        session: Session,
        alert: Alert,
        decision: Decision,
        observed: dict[str, Any],
        now: datetime,
        values: dict[str, Any],
    ) -> int | None:
        """The AlertEvent, and its outbox row unless a silence holds it back (returns that silence's id)."""
        kind = decision.event
        assert kind is not None
        episode_id = alert.fired_event_id
        facts: dict[str, Any] = {
            **observed,
            "kind": kind,
            "fingerprint": alert.fingerprint,
            "reason": decision.reason,
            "at": isoformat(now),
            "fired_at": isoformat(decision.after.fired_at),
        }
        silenced = silencing.annotate(session, alert, facts, now) if decision.notify else None
        facts["rendered"] = render(facts)
        event = alert_store.add_event(
            session,
            fp=alert.fingerprint,
            rule=FEED_HEALTH_RULE,
            topic=alert.topic,
            kind=kind,
            at=now,
            value=facts.get("value"),
            threshold=facts.get("threshold"),
            article_count=0,
            detail=facts,
        )
        assert event.id is not None
        if kind == "fired":
            values["fired_event_id"] = event.id
            episode_id = event.id
        if decision.notify and silenced is None:
            payload = {**facts, **delivery_facts(alert.fingerprint), "episode_event_id": episode_id}
            enqueue_notice(session, event.id, alert.fingerprint, kind, payload, now, self.router)
        return silenced


def _last_facts(session: Session, alert: Alert) -> dict[str, Any]:
    """A retired feed's facts: what its alert last recorded (the feed is no longer checked)."""
    latest = (
        session.execute(
            sa.select(AlertEvent)
            .where(AlertEvent.fingerprint == alert.fingerprint)
            .order_by(AlertEvent.id.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )
    facts = stored_detail(latest) if latest is not None else {}
    facts.pop("rendered", None)
    facts.pop("silenced_by", None)
    facts.pop("silenced_until", None)
    facts.pop("silence_ended", None)
    facts.update(rule=FEED_HEALTH_RULE, topic=alert.topic, feed=alert.topic, metric="feed_health")
    facts.setdefault("severity", "warning")
    return facts


def _aware(row: Any) -> Any:
    """The row with its times as aware UTC (a correlated max comes back as the dialect's raw value)."""
    values = row._asdict()
    for key in ("last_polled_at", "last_success_at", "created_at", "last_new_at"):
        value = values.get(key)
        if isinstance(value, str):  # SQLite returns an aggregate of a DATETIME column as text
            value = datetime.fromisoformat(value)
        values[key] = as_utc(value) if value is not None else None
    return _Row(**values)


@dataclass(frozen=True, slots=True)
class _Row:
    name: str
    consecutive_errors: int | None
    last_status: str | None
    last_http_status: int | None
    last_error: str | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    created_at: datetime | None
    last_new_at: datetime | None
