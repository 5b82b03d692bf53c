"""The notification outbox (table `notifications`): enqueue with the transition, claim, record the outcome.

Life of a row: pending -> sending -> delivered | pending (retry later) | failed.
- `enqueue` runs inside the rule engine's transaction, so a transition and its notification commit together.
- `claim_next` takes one due row: `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, then a conditional
  `UPDATE ... WHERE status = <what was read>` on both databases, so two workers never claim one row.
  While `sending`, `next_attempt_at` is the claim's expiry: a row still `sending` after it belonged to a
  worker that died, and is claimed again with `outcome_unknown` set.
- Rows of one alert are delivered in order: a row waits while an earlier row of its fingerprint for the same
  receiver is unsettled. Each receiver has its own row per transition (`receiver`), so a receiver that is
  down holds back only its own rows, never another receiver's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.config import DEFAULT_RECEIVER
from monitor.store import alerts as alert_store
from monitor.store.db import session_scope
from monitor.store.tables import AlertEvent, Notification
from monitor.timeutil import isoformat

UNSETTLED = ("pending", "sending")
_table = Notification.__table__
_c = _table.c


def enqueue(
    session: Session,
    *,
    alert_event_id: int | None,
    fingerprint: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    receiver: str | None = None,
) -> Notification:
    """Add the notification of a transition (call inside the transition's transaction). A message with no
    transition behind it (a digest: `alert_event_id` None) is queued the same way, in its claim's
    transaction; `fingerprint` then orders that message's series (e.g. `digest:<name>`).

    `receiver`: who gets this row (monitor/notify/routing.py writes one row per routed receiver); None
    takes the payload's `receiver` (a digest names it there), else `default`."""
    row = Notification(
        alert_event_id=alert_event_id,
        receiver=receiver or payload.get("receiver") or DEFAULT_RECEIVER,
        fingerprint=fingerprint,
        kind=kind,
        payload=json.dumps(payload, ensure_ascii=False),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def for_event(session: Session, alert_event_id: int, receiver: str | None = None) -> Notification | None:
    """The event's row for `receiver`; with None its first row (all carry the same payload)."""
    query = sa.select(Notification).where(Notification.alert_event_id == alert_event_id)
    if receiver is not None:
        query = query.where(Notification.receiver == receiver)
    return session.execute(query.order_by(Notification.id)).scalars().first()


def all_for_event(session: Session, alert_event_id: int) -> list[Notification]:
    """Every receiver's row of one transition, in the order they were written."""
    query = sa.select(Notification).where(Notification.alert_event_id == alert_event_id)
    return list(session.execute(query.order_by(Notification.id)).scalars())


def get(engine: Engine, notification_id: int) -> Notification | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(Notification, notification_id)


def claim_next(
    engine: Engine, now: datetime, lease_until: datetime, skip_receivers: Sequence[str] = ()
) -> Notification | None:
    """Claim the oldest due row (pending and due, or sending with an expired claim), or None.
    `skip_receivers`: receivers not to send to now (one that answered 429 in this run)."""
    earlier = _table.alias("earlier")
    blocked = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.fingerprint == _c.fingerprint,
            earlier.c.receiver == _c.receiver,
            earlier.c.id < _c.id,
            earlier.c.status.in_(UNSETTLED),
        )
        .exists()
    )
    query = (
        sa.select(_c.id, _c.status)
        .where(_c.status.in_(UNSETTLED), _c.next_attempt_at <= now, ~blocked)
        .order_by(_c.id)
        .limit(5)
    )
    if skip_receivers:
        query = query.where(_c.receiver.not_in(list(skip_receivers)))
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(skip_locked=True, of=_table)
    with Session(engine, expire_on_commit=False) as session:
        for notification_id, status in session.execute(query).all():
            claimed = session.execute(
                sa.update(_table)
                .where(_c.id == notification_id, _c.status == status, _c.next_attempt_at <= now)
                .values(
                    status="sending",
                    attempts=_c.attempts + 1,
                    next_attempt_at=lease_until,
                    outcome_unknown=sa.or_(_c.outcome_unknown, sa.literal(status == "sending")),
                )
            ).rowcount
            if claimed == 1:
                session.commit()
                return session.get(Notification, notification_id, populate_existing=True)
        session.rollback()
    return None


def mark_delivered(
    engine: Engine,
    notification_id: int,
    *,
    now: datetime,
    via: str,
    channel: str | None = None,
    ts: str | None = None,
    fired_event_id: int | None = None,
) -> bool:
    """Record success (and the receiver's message id; for a `fired` chat message, on the alert too) in one
    transaction."""
    with session_scope(engine) as session:
        row = session.get(Notification, notification_id)
        done = session.execute(
            sa.update(_table)
            .where(_c.id == notification_id, _c.status == "sending")
            .values(
                status="delivered",
                delivered_at=now,
                delivered_via=via,
                channel=channel,
                message_id=ts,
                last_error=None,
                outcome_unknown=False,
            )
        ).rowcount
        if done and row is not None and row.kind == "fired" and ts and channel:
            alert_store.set_message(
                session, row.fingerprint, fired_event_id or row.alert_event_id, channel, ts
            )
        return done == 1


def record_post(engine: Engine, notification_id: int, *, channel: str | None, ts: str | None) -> None:
    """Remember a posted message's ts while the row is still `sending` (a multi-step delivery)."""
    with session_scope(engine) as session:
        session.execute(
            sa.update(_table).where(_c.id == notification_id).values(channel=channel, message_id=ts)
        )


def mark_retry(
    engine: Engine, notification_id: int, *, error: str, next_attempt_at: datetime, outcome_unknown: bool
) -> None:
    with session_scope(engine) as session:
        session.execute(
            sa.update(_table)
            .where(_c.id == notification_id, _c.status == "sending")
            .values(
                status="pending",
                last_error=error[:2000],
                next_attempt_at=next_attempt_at,
                outcome_unknown=outcome_unknown,
            )
        )


def mark_failed(engine: Engine, notification_id: int, *, error: str, now: datetime) -> None:
    with session_scope(engine) as session:
        session.execute(
            sa.update(_table)
            .where(_c.id == notification_id, _c.status == "sending")
            .values(status="failed", last_error=error[:2000], next_attempt_at=None)
        )


def next_due(engine: Engine) -> datetime | None:
    """When the earliest unsettled row becomes due (pending: next attempt; sending: claim expiry)."""
    with Session(engine) as session:
        return session.execute(
            sa.select(sa.func.min(_c.next_attempt_at)).where(_c.status.in_(UNSETTLED))
        ).scalar()


def latest_channel_id(engine: Engine, receiver: str = DEFAULT_RECEIVER) -> str | None:
    """The channel ID Slack reported for the receiver's latest bot delivery (names like #alerts are not
    IDs)."""
    with Session(engine) as session:
        return session.execute(
            sa.select(_c.channel)
            .where(
                _c.status == "delivered",
                _c.delivered_via == "bot",
                _c.receiver == receiver,
                _c.channel.is_not(None),
            )
            .order_by(_c.id.desc())
            .limit(1)
        ).scalar()


# A later notification of the same alert, to the same receiver, than the row in `_table` (correlated).
_later = _table.alias("later")
_is_later = sa.and_(
    _later.c.fingerprint == _c.fingerprint, _later.c.receiver == _c.receiver, _later.c.id > _c.id
)


@dataclass(frozen=True, slots=True)
class FailedNotification:
    """A failed outbox row, and the next notification of its alert if there is one.

    A row with a later notification is the past: its `fired` or `reminder` is followed by a resolved
    notice, or its resolved notice by a new episode. Sent now, it would read as the present.
    """

    id: int
    fingerprint: str
    rule: str
    topic: str
    kind: str
    created_at: datetime
    error: str | None
    superseded_by: str | None = None  # kind of the alert's next notification
    superseded_at: datetime | None = None
    receiver: str = DEFAULT_RECEIVER

    @property
    def current(self) -> bool:
        return self.superseded_by is None


def failed(
    engine: Engine,
    *,
    ids: Sequence[int] = (),
    rules: Sequence[str] = (),
    since: datetime | None = None,
) -> list[FailedNotification]:
    """Failed rows (of these ids, rules, created since), oldest first, each with what superseded it."""
    events = AlertEvent.__table__.c
    next_id = sa.select(sa.func.min(_later.c.id)).where(_is_later).scalar_subquery()
    query = (
        sa.select(
            _c.id,
            _c.fingerprint,
            events.rule,
            events.topic,
            _c.kind,
            _c.created_at,
            _c.last_error,
            _c.receiver,
            next_id,
        )
        .join(AlertEvent.__table__, events.id == _c.alert_event_id)
        .where(_c.status == "failed")
        .order_by(_c.id)
    )
    if ids:
        query = query.where(_c.id.in_(list(ids)))
    if rules:
        query = query.where(events.rule.in_(list(rules)))
    if since is not None:
        query = query.where(_c.created_at >= since)
    with Session(engine) as session:
        rows = session.execute(query).all()
        nexts = _kinds_and_times(session, [row[-1] for row in rows if row[-1] is not None])
    return [FailedNotification(*row[:7], *nexts.get(row[-1], (None, None)), receiver=row[7]) for row in rows]


def _kinds_and_times(session: Session, ids: list[int]) -> dict[int, tuple[str, datetime]]:
    query = sa.select(_c.id, _c.kind, _c.created_at).where(_c.id.in_(ids))
    return {row.id: (row.kind, row.created_at) for row in session.execute(query)}


def requeue(
    engine: Engine, rows: Sequence[FailedNotification], now: datetime, *, history: bool = False
) -> list[int]:
    """Queue `rows` again (if still failed); the ids queued. Superseded rows only with `history`, and
    then marked in their payload so every transport renders them as the past, not as news. A row that
    a transition superseded since `rows` were read stays failed."""
    queued: list[int] = []
    with session_scope(engine) as session:
        for row in rows:
            if not row.current and not history:
                continue
            update = sa.update(_table).where(_c.id == row.id, _c.status == "failed")
            values: dict[str, Any] = {"status": "pending", "attempts": 0, "next_attempt_at": now}
            if row.current:
                update = update.where(~sa.select(_later.c.id).where(_is_later).exists())
            else:
                values["payload"] = _as_history(session, row)
            if session.execute(update.values(**values)).rowcount:
                queued.append(row.id)
    return queued


def _as_history(session: Session, row: FailedNotification) -> str:
    payload = json.loads(session.execute(sa.select(_c.payload).where(_c.id == row.id)).scalar_one())
    payload["history"] = {"superseded_by": row.superseded_by, "superseded_at": isoformat(row.superseded_at)}
    return json.dumps(payload, ensure_ascii=False)


def requeue_failed(engine: Engine, now: datetime) -> int:
    """Queue again every failed row that is still current (superseded ones stay failed)."""
    return len(requeue(engine, failed(engine), now))


def count_by_status(connection: sa.Connection) -> dict[str, int]:
    """Outbox rows per status (the `/metrics` gauge)."""
    c = Notification.__table__.c
    return dict(connection.execute(sa.select(c.status, sa.func.count()).group_by(c.status)).all())


def list_notifications(engine: Engine, status: str | None = None) -> list[Notification]:
    with Session(engine, expire_on_commit=False) as session:
        query = sa.select(Notification).order_by(Notification.id)
        if status is not None:
            query = query.where(Notification.status == status)
        return list(session.execute(query).scalars())
