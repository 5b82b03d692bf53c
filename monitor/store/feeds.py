"""Feed state: one row per configured feed (validators, last poll, status, errors, backoff).

The config file is the source of truth for which feeds exist; rows are created on first use and keep
what polling learned (ETag, permanent URL, error streak). A feed whose configured URL changed starts
over: its old permanent redirect and validators belonged to the old URL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.store.db import session_scope
from monitor.store.tables import Feed

log = logging.getLogger(__name__)

_FEEDS = Feed.__table__
ERROR_MAX = 2000


@dataclass(frozen=True, slots=True)
class FeedState:
    id: int
    name: str
    url: str
    current_url: str | None
    etag: str | None
    last_modified: str | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_status: str | None
    last_http_status: int | None
    last_error: str | None
    consecutive_errors: int
    next_poll_at: datetime | None
    entries_seen: int

    @property
    def fetch_url(self) -> str:
        """Where to poll: the target of a permanent redirect, else the configured URL."""
        return self.current_url or self.url

    def in_backoff(self, now: datetime, tolerance: timedelta = timedelta(0)) -> bool:
        """True while a failing feed waits for its next allowed poll."""
        return (
            self.consecutive_errors > 0
            and self.next_poll_at is not None
            and now + tolerance < self.next_poll_at
        )


def _state(row: sa.Row) -> FeedState:
    return FeedState(
        id=row.id,
        name=row.name,
        url=row.url,
        current_url=row.current_url,
        etag=row.etag,
        last_modified=row.last_modified,
        last_polled_at=row.last_polled_at,
        last_success_at=row.last_success_at,
        last_status=row.last_status,
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        consecutive_errors=row.consecutive_errors or 0,
        next_poll_at=row.next_poll_at,
        entries_seen=row.entries_seen or 0,
    )


def _select() -> sa.Select:
    return sa.select(*[_FEEDS.c[name] for name in FeedState.__slots__])


def get_feed(engine: Engine, name: str) -> FeedState | None:
    with engine.connect() as connection:
        row = connection.execute(_select().where(_FEEDS.c.name == name)).first()
    return _state(row) if row else None


def list_feeds(engine: Engine) -> list[FeedState]:
    with engine.connect() as connection:
        rows = connection.execute(_select().order_by(_FEEDS.c.name)).all()
    return [_state(row) for row in rows]


def last_successes(connection: sa.Connection) -> list[tuple[str, datetime]]:
    """(feed name, last successful poll) for every feed that ever succeeded (the `/metrics` gauge)."""
    query = sa.select(_FEEDS.c.name, _FEEDS.c.last_success_at).where(_FEEDS.c.last_success_at.is_not(None))
    return [(name, at) for name, at in connection.execute(query).all()]


def ensure_feeds(engine: Engine, feeds: Sequence[tuple[str, str]], now: datetime) -> dict[str, FeedState]:
    """Create missing rows for (name, url) pairs and reset feeds whose configured URL changed."""
    wanted = dict(feeds)
    with session_scope(engine) as session:
        rows = {row.name: row for row in session.execute(_select().where(_FEEDS.c.name.in_(list(wanted))))}
        for name, url in wanted.items():
            row = rows.get(name)
            if row is None:
                session.execute(_insert_ignore(session, {"name": name, "url": url, "created_at": now}))
            elif row.url != url:
                log.info(
                    "feed url changed in the config; forgetting its redirect and validators",
                    extra={"feed": name, "old_url": row.url, "url": url},
                )
                session.execute(
                    sa.update(_FEEDS)
                    .where(_FEEDS.c.id == row.id)
                    .values(
                        url=url,
                        current_url=None,
                        etag=None,
                        last_modified=None,
                        consecutive_errors=0,
                        next_poll_at=None,
                    )
                )
        result = session.execute(_select().where(_FEEDS.c.name.in_(list(wanted)))).all()
    return {row.name: _state(row) for row in result}


def _insert_ignore(session: Session, values: dict) -> sa.Insert:
    """INSERT that does nothing when another process created the same feed name first."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(_FEEDS).values(**values).on_conflict_do_nothing(index_elements=["name"])


def backoff_delay(
    every: timedelta, consecutive_errors: int, max_backoff: timedelta, retry_after: float | None = None
) -> timedelta:
    """Exponential: every x 1, 2, 4, ... (capped); never sooner than a server's Retry-After."""
    exponent = max(0, min(consecutive_errors - 1, 30))
    delay = min(max_backoff, every * (2**exponent))
    if retry_after:
        delay = max(delay, min(max_backoff, timedelta(seconds=retry_after)))
    return delay


def record_success(
    session: Session,
    feed_id: int,
    *,
    now: datetime,
    status: str,
    http_status: int | None,
    every: timedelta,
    etag: str | None = None,
    last_modified: str | None = None,
    current_url: str | None = None,
    problem: str | None = None,
    entries_seen: int | None = None,
    keep_validators: bool = False,
) -> None:
    """A poll that delivered content or a 304 (`status` ok | not_modified | malformed).

    Called first in the transaction that stores the articles, so the feed row write takes the SQLite
    write lock up front, and new validators are committed only together with the entries they cover.
    """
    values: dict = {
        "last_polled_at": now,
        "last_success_at": now,
        "last_status": status,
        "last_http_status": http_status,
        "last_error": problem[:ERROR_MAX] if problem else None,
        "consecutive_errors": 0,
        "next_poll_at": now + every,
    }
    if not keep_validators:
        values["etag"] = etag[:500] if etag else None
        values["last_modified"] = last_modified[:200] if last_modified else None
    if current_url:
        values["current_url"] = current_url[:2000]
    if entries_seen is not None:
        values["entries_seen"] = entries_seen
    session.execute(sa.update(_FEEDS).where(_FEEDS.c.id == feed_id).values(**values))


def record_failure(
    engine: Engine,
    feed_id: int,
    *,
    now: datetime,
    error: str,
    http_status: int | None,
    every: timedelta,
    max_backoff: timedelta,
    retry_after: float | None = None,
) -> datetime:
    """A failed poll: count it, store the error, schedule the next allowed poll. Returns that time."""
    with session_scope(engine) as session:
        errors = (
            session.execute(
                sa.select(_FEEDS.c.consecutive_errors).where(_FEEDS.c.id == feed_id)
            ).scalar_one_or_none()
            or 0
        )
        errors += 1
        next_poll = now + backoff_delay(every, errors, max_backoff, retry_after)
        session.execute(
            sa.update(_FEEDS)
            .where(_FEEDS.c.id == feed_id)
            .values(
                last_polled_at=now,
                last_status="error",
                last_http_status=http_status,
                last_error=error[:ERROR_MAX],
                consecutive_errors=errors,
                next_poll_at=next_poll,
            )
        )
    return next_poll


def claim_due_feeds(
    engine: Engine, leases: dict[str, timedelta], now: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """Claim up to `limit` due feeds of `leases` (name -> how long a claim holds); returns (name, claimed at).

    Due: never polled, or `next_poll_at` (the next regular poll, or the end of a backoff) has passed. A claim
    moves `next_poll_at` to `now + lease` (the feed's interval), so no other replica claims it until then;
    the poll itself then records its own next poll (success or backoff). A replica killed mid-poll leaves the
    feed due again one interval later, as a single process killed mid-poll always did.

    PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent claimers split the due feeds between them
    instead of queueing on the same rows. Both dialects: the update is conditional on the feed still being due
    (a claimer that read the row before another's claim committed updates nothing and does not get it)."""
    if not leases or limit <= 0:
        return []
    due = sa.or_(_FEEDS.c.next_poll_at.is_(None), _FEEDS.c.next_poll_at <= now)
    claimed: list[tuple[str, datetime]] = []
    with engine.begin() as connection:
        query = (
            sa.select(_FEEDS.c.id, _FEEDS.c.name)
            .where(_FEEDS.c.name.in_(list(leases)), due)
            .order_by(_FEEDS.c.next_poll_at.asc().nulls_first(), _FEEDS.c.id)
            .limit(limit)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for feed_id, name in connection.execute(query).all():
            updated = connection.execute(
                sa.update(_FEEDS).where(_FEEDS.c.id == feed_id, due).values(next_poll_at=now + leases[name])
            )
            if updated.rowcount == 1:
                claimed.append((name, now))
    return claimed
