"""The outbox worker: claim due notifications one at a time, send them, record the outcome.

- Claim: a row becomes `sending` (attempts + 1, claim expiry in `next_attempt_at`) before any network call.
- Success: `delivered` with the Slack channel and `ts`, in one transaction.
- Retry: 429 waits what Retry-After says (seconds or an HTTP date); 500/502/503/504, timeouts and connection
  errors back off exponentially with jitter (`backoff_base` doubling up to `backoff_max`). After
  `max_attempts` attempts, or at once for a permanent error (bad token, unknown channel, invalid payload),
  the row is `failed` with the reason, and logged. `monitor alerts redeliver` queues failed rows again,
  except those later transitions of their alert superseded (or, asked to, sends them marked as history).
- Every request is bounded as a whole by `notify.timeout` (monitor/notify/bounded.py), not per socket read.
- Each row names its receiver (monitor/notify/receivers.py) and is sent through it alone: every receiver
  retries, backs off and fails on its own rows. A 429 pauses that receiver for the rest of the run (Slack's
  limit is per workspace method); the other receivers go on.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor import metrics
from monitor.config import DEFAULT_RECEIVER, Settings
from monitor.logs import redact
from monitor.notify.receivers import build_receivers
from monitor.notify.transports import Job, Parent, Receiver, SendError
from monitor.store import outbox
from monitor.store.tables import Notification
from monitor.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    retried: int = 0


class Deliverer:
    """Sends due outbox rows, each through its receiver (`default`: Slack bot, webhook or the console)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        transport: Receiver | None = None,  # replaces the `default` receiver
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.receivers = build_receivers(settings)
        if transport is not None:
            self.receivers[DEFAULT_RECEIVER] = transport
        self.transport = self.receivers[DEFAULT_RECEIVER]
        self.rng = rng or random.Random()
        self.sleep = sleep
        timeout = settings.notify.timeout.total_seconds()
        # A claim outlives the longest delivery (lookup pages + update + post) by a wide margin.
        self.lease = timedelta(seconds=timeout * 14 + 60)

    @property
    def mode(self) -> str:
        """How the `default` receiver delivers: bot, webhook or console."""
        return self.transport.name

    def deliver_due(self, now: datetime | None = None, *, wait: float = 0.0) -> DeliveryReport:
        """Send every due notification. `now` fixes the clock (tests). With `wait` > 0 (and no fixed
        `now`), keep going for up to that many seconds while retries come due (one-shot `monitor collect`)."""
        fixed = as_utc(now) if now is not None else None
        deadline = time.monotonic() + max(wait, 0.0)
        report = DeliveryReport()
        waiting = fixed is None and wait > 0
        paused: dict[str, datetime] = {}  # receivers that answered 429: not sent to until then
        while True:
            current = fixed or utcnow()
            skip = [name for name, until in paused.items() if fixed is not None or until > current]
            row = outbox.claim_next(self.engine, current, current + self.lease, skip)
            if row is not None:
                outcome = self._deliver(row, current, report)
                if outcome == "rate_limited":  # it asked us to slow down: its other rows wait too
                    retry = outbox.get(self.engine, row.id).next_attempt_at  # type: ignore[arg-type, union-attr]
                    paused[row.receiver] = retry or current
                continue
            if not waiting:
                break
            due = outbox.next_due(self.engine)
            resume = min((until for until in paused.values() if until > utcnow()), default=None)
            if due is None or due <= utcnow():  # nothing left, or only rows waiting behind others
                if resume is None:
                    break
                due = resume
            elif resume is not None:
                due = min(due, resume)
            pause = max((due - utcnow()).total_seconds(), 0.05) if due is not None else 0.05
            if time.monotonic() + pause > deadline:
                break
            self.sleep(pause)
        return report

    # ------------------------------------------------------------------ one row

    def _deliver(self, row: Notification, now: datetime, report: DeliveryReport) -> str:
        assert row.id is not None
        receiver = self.receivers.get(row.receiver)
        context = {
            "notification": row.id,
            "fingerprint": row.fingerprint,
            "kind": row.kind,
            "attempt": row.attempts,
            "receiver": row.receiver,
            "via": receiver.name if receiver is not None else None,
        }
        if row.message_id:  # a previous worker posted and recorded the message, then stopped before finishing
            outbox.mark_delivered(
                self.engine,
                row.id,
                now=now,
                via=row.delivered_via or (receiver.name if receiver is not None else "unknown"),
                channel=row.channel,
                ts=row.message_id,
            )
            report.delivered += 1
            log.info(
                "notification was already posted; marked delivered", extra={**context, "ts": row.message_id}
            )
            return "delivered"
        if receiver is None:  # the configuration dropped it since the row was written: keep the row
            error = SendError(
                f"receiver {row.receiver!r} is not configured (any more): add it back (or route elsewhere) "
                "and run `monitor alerts redeliver`",
                transient=False,
            )
            return self._failed_attempt(row, error, now, report, context, via="unknown")
        try:
            job = self._job(row, receiver)
            sent = receiver.send(job)
        except SendError as exc:
            return self._failed_attempt(row, exc, now, report, context, via=receiver.name)
        except Exception as exc:  # a bug or an unexpected answer: retry with backoff, never lose the row
            log.exception("unexpected error delivering a notification", extra=context)
            error = SendError(
                f"unexpected error: {type(exc).__name__}: {exc}",
                transient=True,
                unknown=True,
                category="unexpected",
            )
            return self._failed_attempt(row, error, now, report, context, via=receiver.name)
        outbox.mark_delivered(
            self.engine, row.id, now=now, via=receiver.name, channel=sent.channel, ts=sent.ts
        )
        report.delivered += 1
        metrics.record_notification(receiver.name, row.kind, ok=True)
        log.info("notification delivered", extra={**context, "ts": sent.ts})
        return "delivered"

    def _failed_attempt(
        self,
        row: Notification,
        exc: SendError,
        now: datetime,
        report: DeliveryReport,
        context: dict,
        *,
        via: str,
    ) -> str:
        assert row.id is not None
        metrics.record_notification(via, row.kind, ok=False, reason=exc.category)
        reason = redact(exc.reason)  # stored and shown by `monitor alerts`: e.g. a malformed webhook URL
        max_attempts = self.settings.notify.max_attempts
        if not exc.transient or row.attempts >= max_attempts:
            why = reason if not exc.transient else f"gave up after {row.attempts} attempts: {reason}"
            outbox.mark_failed(self.engine, row.id, error=why, now=now)
            report.failed += 1
            log.error("notification failed", extra={**context, "reason": why})
            return "failed"
        delay = exc.retry_after if exc.retry_after is not None else self.backoff(row.attempts)
        outbox.mark_retry(
            self.engine,
            row.id,
            error=reason,
            next_attempt_at=now + timedelta(seconds=delay),
            outcome_unknown=exc.unknown or row.outcome_unknown,
        )
        report.retried += 1
        log.warning(
            "notification attempt failed; will retry",
            extra={**context, "reason": reason, "retry_in_s": round(delay, 2)},
        )
        return "rate_limited" if exc.retry_after is not None else "retry"

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half random."""
        notify = self.settings.notify
        step = min(
            notify.backoff_max.total_seconds(),
            notify.backoff_base.total_seconds() * 2 ** max(attempts - 1, 0),
        )
        return step / 2 + self.rng.uniform(0, step / 2)

    def _job(self, row: Notification, receiver: Receiver) -> Job:
        """What the receiver needs; `parent`: this receiver's delivered message of the episode's `fired`
        (a Slack thread to reply in, an e-mail to answer), when it went out the same way."""
        payload = json.loads(row.payload)
        parent = None
        episode = payload.get("episode_event_id")
        if row.kind in ("reminder", "resolved") and episode is not None:
            with Session(self.engine) as session:
                fired = outbox.for_event(session, int(episode), row.receiver)
                if (
                    fired is not None
                    and fired.status == "delivered"
                    and fired.delivered_via == receiver.name
                    and fired.message_id
                ):
                    parent = Parent(
                        channel=fired.channel or "", ts=fired.message_id, payload=json.loads(fired.payload)
                    )
        hint = outbox.latest_channel_id(self.engine, row.receiver) if row.outcome_unknown else None
        return Job(
            id=row.id,
            kind=row.kind,
            payload=payload,
            outcome_unknown=row.outcome_unknown,  # type: ignore[arg-type]
            created_at=row.created_at,
            parent=parent,
            channel_hint=hint,
            receiver=row.receiver,
        )
