"""Silences applied to alert transitions: hold back what an active silence matches; say it once it ends.

Called by the rule engine (and feed health) inside the transaction of the transition, so the decision and
its record commit together:

- `annotate` runs for every notified transition (fired, reminder, resolved). When an active silence matches
  the alert's rule, topic and severity, the transition's facts get `silenced_by` and the caller records the
  event without an outbox row: history keeps it, nobody is paged.
- `release` runs at every evaluation of a firing alert with nothing else to say. When the alert's latest
  fired or reminder notice of this episode was held back by a silence and no silence matches any more (it
  expired, or was expired early), it turns the evaluation into one `reminder` with reason `silence_ended`:
  the notification that tells people the alert is still firing. That reminder is not held back, so the next
  evaluation finds nothing owed and the notice goes out exactly once (the alert's version check settles
  two evaluators racing for it).

A resolved notice held back by a silence is not sent later: once the alert has resolved there is nothing
left to warn about (Alertmanager does the same).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.alerts.explain import stored_detail
from monitor.alerts.lifecycle import Decision
from monitor.config import FEED_HEALTH_RULE, Settings, parse_duration
from monitor.store import silences
from monitor.store.silences import SilenceError
from monitor.store.tables import Alert, AlertEvent, Silence
from monitor.timeutil import as_utc, isoformat

log = logging.getLogger(__name__)

REASON_SILENCE_ENDED = "silence_ended"


def held_back(session: Session, alert: Alert) -> tuple[AlertEvent, int] | None:
    """The firing alert's latest fired/reminder event of this episode, with the silence that held it back,
    if one did; else None (nothing owed)."""
    if alert.state != "firing" or alert.fired_at is None:
        return None
    c = AlertEvent.__table__.c
    latest = (
        session.execute(
            sa.select(AlertEvent)
            .where(
                c.fingerprint == alert.fingerprint,
                c.at >= alert.fired_at,
                c.kind.in_(("fired", "reminder")),
            )
            .order_by(c.id.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )
    if latest is None:
        return None
    silence_id = stored_detail(latest).get("silenced_by")
    return (latest, int(silence_id)) if silence_id is not None else None


def release(
    session: Session, alert: Alert, decision: Decision, severity: str | None, now: datetime
) -> Decision:
    """`decision`, or the one reminder owed because the silence that held the alert's notice back ended."""
    if decision.event is not None or decision.after.state != "firing":
        return decision
    if held_back(session, alert) is None:
        return decision
    if silences.matching(session, alert.rule, alert.topic, severity, now) is not None:
        return decision  # still silenced (by this silence or another)
    return Decision(replace(decision.after, last_notified_at=now), "reminder", REASON_SILENCE_ENDED)


def annotate(session: Session, alert: Alert, facts: dict[str, Any], now: datetime) -> int | None:
    """Mark the facts of a notified transition. Returns the id of the silence that holds it back (record
    it, do not send it), or None (send it; a `silence_ended` reminder then also says which silence ended).
    """
    if facts.get("reason") == REASON_SILENCE_ENDED:
        owed = held_back(session, alert)
        if owed is not None:
            facts["silence_ended"] = _ended(session, owed[1], owed[0], now)
        return None
    silence = silences.matching(session, str(facts["rule"]), str(facts["topic"]), facts.get("severity"), now)
    if silence is None:
        return None
    facts["silenced_by"] = silence.id
    facts["silenced_until"] = isoformat(silence.ends_at)
    log.info(
        "alert %s silenced: recorded, not sent",
        facts.get("kind"),
        extra={"rule": facts["rule"], "topic": facts["topic"], "silence": silence.id},
    )
    return silence.id


def _ended(session: Session, silence_id: int, held: AlertEvent, now: datetime) -> dict[str, Any]:
    """What the owed reminder says about the silence: which one, when it ended, since when it held back."""
    silence = session.get(Silence, silence_id)
    ended = min(as_utc(silence.ends_at), now) if silence is not None else now
    return {
        "id": silence_id,
        "ended_at": isoformat(ended),
        "reason": silence.reason if silence is not None else None,
        "held_back": held.kind,
        "held_back_at": isoformat(held.at),
    }


# ----------------------------------------------------------------------------- new silences from user input


def new_silence(
    settings: Settings,
    engine: Engine,
    matchers: silences.Matchers,
    *,
    reason: str,
    created_by: str | None,
    now: datetime,
    start: str | None = None,
    duration: str | None = None,
    until: str | None = None,
) -> Silence:
    """Check and store a silence given as the CLI and the API take it: matchers, `start` (a date/time;
    default now), and either `duration` (`2h`) or `until` (a date/time). Raises SilenceError naming the
    input at fault: no matcher, a rule or topic nothing could match, an end not after the start, ..."""
    matchers = matchers.check()
    check_names(settings, engine, matchers)
    starts_at = _when(start, "starts_at") if start is not None else now.replace(microsecond=0)
    if (duration is None) == (until is None):
        raise SilenceError(
            "ends_at",
            "say how long: a duration (--for 2h) or an end (--until 2026-03-02T18:00Z), not both"
            if duration is not None
            else "say how long: a duration (--for 2h) or an end (--until 2026-03-02T18:00Z)",
        )
    if duration is not None:
        try:
            length = parse_duration(duration)
        except ValueError as exc:
            raise SilenceError("duration", str(exc)) from None
        if length <= timedelta(0):
            raise SilenceError("duration", f"must be positive, got {duration!r}")
        ends_at = starts_at + length
    else:
        ends_at = _when(str(until), "ends_at")
    return silences.create(
        engine, matchers, starts_at=starts_at, ends_at=ends_at, reason=reason, created_by=created_by, now=now
    )


def check_names(settings: Settings, engine: Engine, matchers: silences.Matchers) -> None:
    """A rule or topic matcher must name something an alert can carry (a typo would silence nothing):
    configured rules and topics, `feed-health` and the feeds' names, and what stored alerts carry."""
    with Session(engine) as session:
        stored = session.execute(sa.select(Alert.rule, Alert.topic).distinct()).all()
    rules = {r.name for r in settings.alerts} | {FEED_HEALTH_RULE} | {rule for rule, _ in stored}
    topics = set(settings.topics) | {f.name for f in settings.feeds} | {topic for _, topic in stored}
    for field, value, known in (("rule", matchers.rule, rules), ("topic", matchers.topic, topics)):
        if value is not None and value not in known:
            raise SilenceError(field, f"unknown {field} {value!r} (known: {', '.join(sorted(known))})")


def _when(value: str, field: str) -> datetime:
    """An ISO 8601 date/time (UTC unless it says). A duration is refused: `--until 2h` is ambiguous."""
    text = value.strip()
    try:
        parse_duration(text)
    except ValueError:
        pass
    else:
        hint = "--for 2h" if field == "ends_at" else "a date/time"
        raise SilenceError(
            field, f"{text!r} is a duration, not a date/time: use {hint} (e.g. 2026-03-02T18:00Z)"
        )
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")))
    except (ValueError, OverflowError):
        raise SilenceError(field, f"{text!r} is not an ISO 8601 date/time (e.g. 2026-03-02T18:00Z)") from None
