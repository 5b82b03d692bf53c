"""Silences (table `silences`): create, list, expire, and find the one that matches an alert now.

Alertmanager's model: a silence has matchers (rule, topic, severity: each optional, at least one; each
compared exactly), a time range `[starts_at, ends_at)`, who made it and why. While one is active the alert
engine records the transitions it matches with its id and sends nothing (monitor/alerts/silencing.py).
They live in the database, not in a process, so every replica and every restart sees the same silences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.store.db import session_scope
from monitor.store.tables import Silence
from monitor.timeutil import as_utc, isoformat

SEVERITIES = ("info", "warning", "critical")
SilenceState = Literal["pending", "active", "expired"]
REASON_MAX = 1000
NAME_MAX = 100

_c = Silence.__table__.c


class SilenceError(ValueError):
    """A silence that cannot be created or expired. `field` names the offending input (`ends_at`, `rule`,
    `id`, ...), which the CLI shows as its option and the API as the field of a 422/404."""

    def __init__(self, field: str, message: str, *, not_found: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class Matchers:
    """What a silence matches; None matches anything."""

    rule: str | None = None
    topic: str | None = None
    severity: str | None = None

    def check(self) -> Matchers:
        """Blank matchers as None; at least one left, severity a known one. Raises SilenceError."""
        rule, topic, severity = (_blank_to_none(v) for v in (self.rule, self.topic, self.severity))
        if rule is None and topic is None and severity is None:
            raise SilenceError(
                "matchers", "a silence needs at least one matcher: a rule, a topic or a severity"
            )
        for field, value in (("rule", rule), ("topic", topic)):
            if value is not None and len(value) > NAME_MAX:
                raise SilenceError(field, f"longer than {NAME_MAX} characters")
        if severity is not None and severity not in SEVERITIES:
            raise SilenceError("severity", f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
        return Matchers(rule, topic, severity)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def create(
    engine: Engine,
    matchers: Matchers,
    *,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str | None,
    now: datetime,
) -> Silence:
    """Store a new silence after checking it; raises SilenceError naming what is wrong."""
    matchers = matchers.check()
    starts_at, ends_at = as_utc(starts_at), as_utc(ends_at)
    if ends_at <= starts_at:
        raise SilenceError(
            "ends_at", f"the end ({isoformat(ends_at)}) is not after the start ({isoformat(starts_at)})"
        )
    if ends_at <= now:
        raise SilenceError("ends_at", f"the end ({isoformat(ends_at)}) has already passed")
    reason = " ".join((reason or "").split())
    if not reason:
        raise SilenceError("reason", "a silence needs a reason (say why the alert is silenced)")
    if len(reason) > REASON_MAX:
        raise SilenceError("reason", f"longer than {REASON_MAX} characters")
    created_by = _blank_to_none(created_by)
    if created_by is not None and len(created_by) > NAME_MAX:
        raise SilenceError("created_by", f"longer than {NAME_MAX} characters")
    row = Silence(
        rule=matchers.rule,
        topic=matchers.topic,
        severity=matchers.severity,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=created_by,
        created_at=now,
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
    return row


def get(engine: Engine, silence_id: int) -> Silence | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(Silence, silence_id)


def list_silences(engine: Engine, now: datetime, *, include_ended: bool = False) -> list[Silence]:
    """Active and pending silences (with `include_ended`, every one), newest first."""
    query = sa.select(Silence).order_by(_c.id.desc())
    if not include_ended:
        query = query.where(_c.ends_at > now)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.execute(query).scalars())


def expire(engine: Engine, silence_id: int, now: datetime) -> Silence:
    """End a silence now (it stays listed with `--all`). Raises SilenceError for an unknown or ended one.

    The update is conditional on the silence not having ended, so two operators expiring it at once get
    one success and one clear error."""
    now = now.replace(microsecond=0)
    with session_scope(engine) as session:
        row = session.get(Silence, silence_id)
        if row is None:
            raise SilenceError("id", f"no silence {silence_id}", not_found=True)
        if as_utc(row.ends_at) <= now:
            raise SilenceError("id", f"silence {silence_id} already ended at {isoformat(row.ends_at)}")
        starts_at = min(as_utc(row.starts_at), now)  # a pending silence expired before it began
        done = session.execute(
            sa.update(Silence.__table__)
            .where(_c.id == silence_id, _c.ends_at > now)
            .values(starts_at=starts_at, ends_at=now, expired_at=now)
        ).rowcount
        if not done:
            raise SilenceError("id", f"silence {silence_id} already ended")
    expired = get(engine, silence_id)
    assert expired is not None
    return expired


def matching(session: Session, rule: str, topic: str, severity: str | None, now: datetime) -> Silence | None:
    """The active silence that matches (rule, topic, severity) at `now`, the one ending last; or None."""
    query = (
        sa.select(Silence)
        .where(
            _c.starts_at <= now,
            _c.ends_at > now,
            sa.or_(_c.rule.is_(None), _c.rule == rule),
            sa.or_(_c.topic.is_(None), _c.topic == topic),
            sa.or_(_c.severity.is_(None), _c.severity == severity),
        )
        .order_by(_c.ends_at.desc(), _c.id)
        .limit(1)
    )
    return session.execute(query).scalars().first()


def state(silence: Silence, now: datetime) -> SilenceState:
    if as_utc(silence.ends_at) <= now:
        return "expired"
    return "pending" if as_utc(silence.starts_at) > now else "active"


def as_dict(silence: Silence, now: datetime) -> dict[str, Any]:
    """A silence as the CLI and the API show it (times as ISO 8601 UTC)."""
    return {
        "id": silence.id,
        "state": state(silence, now),
        "rule": silence.rule,
        "topic": silence.topic,
        "severity": silence.severity,
        "starts_at": isoformat(silence.starts_at),
        "ends_at": isoformat(silence.ends_at),
        "reason": silence.reason,
        "created_by": silence.created_by,
        "created_at": isoformat(silence.created_at),
        "expired_at": isoformat(silence.expired_at),
    }
