"""Digest claims (table `digests`) and their outbox rows: a period's digest is queued once, durably.

`claim` inserts the (name, period_start) row and the digest's outbox rows in one transaction. The unique
constraint decides between processes: on PostgreSQL a second insert of the same key waits for the first
transaction and then fails; on SQLite writers are serialized and the second fails at once. The loser's
outbox rows roll back with its claim, so two replicas, or a process restarted after queueing, never queue
a period twice; and a crash before the commit leaves nothing, so the period is claimed again on restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from monitor.store import outbox
from monitor.store.db import session_scope
from monitor.store.tables import Digest
from monitor.timeutil import as_utc

_c = Digest.__table__.c


def fingerprint(name: str) -> str:
    """The outbox series of a digest: its messages are delivered in order, one after the other."""
    return f"digest:{name}"


def is_claimed(engine: Engine, name: str, period_start: datetime) -> bool:
    with engine.connect() as connection:
        query = sa.select(_c.id).where(_c.name == name, _c.period_start == as_utc(period_start))
        return connection.execute(query).first() is not None


def claim(
    engine: Engine,
    *,
    name: str,
    period_start: datetime,
    period_end: datetime,
    now: datetime,
    receivers: Sequence[str],
    payloads: Sequence[dict[str, Any]],
) -> int | None:
    """Claim the period and queue `payloads` (one outbox row each) in one transaction; the claim's id, or
    None when the period was claimed already (by another process, or by this one before a restart)."""
    try:
        with session_scope(engine) as session:
            row = Digest(
                name=name,
                period_start=as_utc(period_start),
                period_end=as_utc(period_end),
                created_at=now,
                receivers=",".join(receivers)[:1000],
            )
            session.add(row)
            session.flush()  # the unique key is checked here, before any outbox row is written
            _enqueue(session, name, payloads, now)
            return row.id
    except IntegrityError:
        return None


def queue(engine: Engine, *, name: str, payloads: Sequence[dict[str, Any]], now: datetime) -> list[int]:
    """Queue a digest asked for by hand (`monitor digest --send`): no period is claimed."""
    with session_scope(engine) as session:
        return _enqueue(session, name, payloads, now)


def _enqueue(session: Session, name: str, payloads: Sequence[dict[str, Any]], now: datetime) -> list[int]:
    rows = [
        outbox.enqueue(
            session,
            alert_event_id=None,
            fingerprint=fingerprint(name),
            kind="digest",
            payload=p,
            now=now,
            receiver=p.get("receiver"),
        )
        for p in payloads
    ]
    return [row.id for row in rows if row.id is not None]


def claims(engine: Engine, name: str | None = None) -> list[Digest]:
    """Claimed periods, oldest first."""
    with Session(engine, expire_on_commit=False) as session:
        query = sa.select(Digest).order_by(Digest.period_start, Digest.id)
        if name is not None:
            query = query.where(Digest.name == name)
        return list(session.execute(query).scalars())
