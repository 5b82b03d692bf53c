"""Alert state and history (tables `alerts`, `alert_events`): the repository the rule engine and CLI use.

State writes are optimistic: `update_alert` changes a row only when its `version` is still the one read,
so two evaluators racing over one alert produce one transition, never two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from monitor.store.tables import Alert, AlertEvent, Notification

ACTIVE_STATES = ("pending", "firing")


def fingerprint(rule: str, topic: str) -> str:
    """Alert identity: (rule, topic), never the message text."""
    return hashlib.sha256(f"{rule}\0{topic}".encode()).hexdigest()[:20]


def ensure_alert(engine: Engine, fp: str, rule: str, topic: str) -> None:
    """Create the alert's row in state `inactive` unless it exists (safe when two processes race)."""
    with Session(engine) as session:
        if session.get(Alert, fp) is not None:
            return
        session.add(Alert(fingerprint=fp, rule=rule, topic=topic, state="inactive"))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()


def get_alert(session: Session, fp: str) -> Alert | None:
    return session.get(Alert, fp, populate_existing=True)


def update_alert(session: Session, fp: str, version: int, **values: Any) -> bool:
    """Write `values` only if the row is still at `version`; False means another evaluator got there first."""
    table = Alert.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.fingerprint == fp, table.c.version == version)
        .values(version=version + 1, **values)
    )
    return result.rowcount == 1


def add_event(
    session: Session,
    *,
    fp: str,
    rule: str,
    topic: str,
    kind: str,
    at: datetime,
    value: float | None,
    threshold: float | None,
    article_count: int,
    detail: dict[str, Any] | None = None,
) -> AlertEvent:
    event = AlertEvent(
        fingerprint=fp,
        rule=rule,
        topic=topic,
        kind=kind,
        at=at,
        value=value,
        threshold=threshold,
        article_count=article_count,
        detail=json.dumps(detail, ensure_ascii=False) if detail else None,
    )
    session.add(event)
    session.flush()
    return event


def alerts_in_states(session: Session, states: Sequence[str]) -> list[Alert]:
    return list(session.execute(sa.select(Alert).where(Alert.state.in_(states))).scalars())


def all_alerts(session: Session) -> list[Alert]:
    return list(session.execute(sa.select(Alert).order_by(Alert.rule, Alert.topic)).scalars())


def rule_names(engine: Engine) -> set[str]:
    """Rules with stored alerts (also rules that have since left the configuration)."""
    with engine.connect() as connection:
        return set(connection.execute(sa.select(Alert.__table__.c.rule).distinct()).scalars())


def count_by_state(connection: sa.Connection) -> dict[str, int]:
    """Alert identities per current state (the `/metrics` gauge)."""
    c = Alert.__table__.c
    return dict(connection.execute(sa.select(c.state, sa.func.count()).group_by(c.state)).all())


def set_message(session: Session, fp: str, fired_event_id: int, channel: str | None, ts: str | None) -> None:
    """Remember the chat message of an episode on the alert, if that episode is still the current one. With
    several chat receivers the first message posted is kept (each row has its own)."""
    table = Alert.__table__
    session.execute(
        sa.update(table)
        .where(
            table.c.fingerprint == fp,
            table.c.fired_event_id == fired_event_id,
            table.c.message_id.is_(None),
        )
        .values(message_channel=channel, message_id=ts)
    )


def events(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    fingerprints: Iterable[str] | None = None,
) -> list[AlertEvent]:
    query = sa.select(AlertEvent).order_by(AlertEvent.at, AlertEvent.id)
    if since is not None:
        query = query.where(AlertEvent.at >= since)
    if until is not None:
        query = query.where(AlertEvent.at <= until)
    if fingerprints is not None:
        query = query.where(AlertEvent.fingerprint.in_(list(fingerprints)))
    return list(session.execute(query).scalars())


# ----------------------------------------------------------------------------- episodes (alert history)


@dataclass
class Episode:
    """One run of an alert: from pending (or fired) to resolved or cancelled, or still open."""

    fingerprint: str
    rule: str
    topic: str
    state: str  # pending | firing | resolved | cancelled
    started_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    value: float | None = None  # when it fired (or went pending, while pending)
    threshold: float | None = None
    articles: int = 0  # in the window when it fired
    reminders: int = 0
    reason: str | None = None
    # Delivery of the fired notification: its status (with several receivers the least settled one:
    # failed, then sending, pending, delivered) and why attempts failed (each receiver's reason, named).
    notification: str | None = None
    notification_error: str | None = None  # the stored reason its last attempt failed (until delivered)
    event_ids: list[int] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "topic": self.topic,
            "state": self.state,
            "started_at": self.started_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "value": self.value,
            "threshold": self.threshold,
            "articles": self.articles,
            "reminders": self.reminders,
            "reason": self.reason,
            "notification": self.notification,
            "notification_error": self.notification_error,
            "fingerprint": self.fingerprint,
        }


def episodes(session: Session, since: datetime | None = None, until: datetime | None = None) -> list[Episode]:
    """Alert history as episodes overlapping [since, until]; one begun before `since` appears whole."""
    rows = events(session, since=since, until=until)
    if since is not None:
        first: dict[str, str] = {}
        for row in rows:
            first.setdefault(row.fingerprint, row.kind)
        need = {fp for fp, kind in first.items() if kind != "pending"}
        need |= {alert.fingerprint for alert in alerts_in_states(session, ACTIVE_STATES)}
        for fp in sorted(need):
            rows.extend(_episode_prefix(session, fp, since))
    rows.sort(key=lambda row: (row.at, row.id))

    current: dict[str, Episode] = {}
    done: list[Episode] = []
    for row in rows:
        episode = current.get(row.fingerprint)
        if episode is None:
            episode = Episode(row.fingerprint, row.rule, row.topic, state="pending", started_at=row.at)
            current[row.fingerprint] = episode
        episode.event_ids.append(row.id)  # type: ignore[arg-type]
        if row.kind in ("pending", "fired") or episode.threshold is None:
            episode.value, episode.threshold, episode.articles = row.value, row.threshold, row.article_count
        if row.kind == "pending":
            episode.state = "pending"
        elif row.kind == "fired":
            episode.state, episode.fired_at = "firing", row.at
        elif row.kind == "reminder":
            episode.state = "firing"
            episode.reminders += 1
        elif row.kind in ("resolved", "cancelled"):
            episode.state = "resolved" if row.kind == "resolved" else "cancelled"
            episode.resolved_at = row.at if row.kind == "resolved" else None
            episode.reason = json.loads(row.detail).get("reason") if row.detail else None
            done.append(current.pop(row.fingerprint))
    result = done + list(current.values())
    by_event = {event_id: episode for episode in result for event_id in episode.event_ids}
    if by_event:
        _add_delivery(session, by_event)
    result.sort(key=lambda e: (e.started_at, e.rule))
    return result


_STATUS_ORDER = ("failed", "sending", "pending", "delivered")


def _add_delivery(session: Session, by_event: dict[int, Episode]) -> None:
    """Each episode's fired notification: one status over its receivers' rows, and their errors."""
    n = Notification
    query = (
        sa.select(n.alert_event_id, n.receiver, n.status, n.last_error)
        .where(n.alert_event_id.in_(list(by_event)), n.kind == "fired")
        .order_by(n.id)
    )
    rows: dict[int, list[tuple[str, str, str | None]]] = {}
    for event_id, receiver, status, error in session.execute(query):
        rows.setdefault(event_id, []).append((receiver, status, error))
    for event_id, found in rows.items():
        statuses = [status for _, status, _ in found]
        episode = by_event[event_id]
        episode.notification = min(
            statuses, key=lambda s: _STATUS_ORDER.index(s) if s in _STATUS_ORDER else 0
        )
        errors = [(receiver, error) for receiver, status, error in found if error and status != "delivered"]
        if len(found) == 1:  # one receiver (`default`): its reason as it was stored
            episode.notification_error = errors[0][1] if errors else None
        else:
            episode.notification_error = "; ".join(f"{r}: {e}" for r, e in errors) or None


def _episode_prefix(session: Session, fp: str, since: datetime) -> list[AlertEvent]:
    """The events before `since` of the episode open at `since` (after the last resolve/cancel)."""
    last_end = session.execute(
        sa.select(sa.func.max(AlertEvent.at)).where(
            AlertEvent.fingerprint == fp,
            AlertEvent.at < since,
            AlertEvent.kind.in_(("resolved", "cancelled")),
        )
    ).scalar()
    query = sa.select(AlertEvent).where(AlertEvent.fingerprint == fp, AlertEvent.at < since)
    if last_end is not None:
        query = query.where(AlertEvent.at > last_end)
    return list(session.execute(query).scalars())
