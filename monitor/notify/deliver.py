"""The outbox worker: claim due notifications one at a time, send them, record the outcome.

- Claim: a row becomes `sending` (attempts + 1, claim expiry in `next_attempt_at`) before any network call.
- Success: `delivered` with the Slack channel and `ts`, in one transaction.
- Retry: 429 waits what Retry-After says (seconds or an HTTP date); 500/502/503/504, timeouts and connection
  errors back off exponentially with jitter (`backoff_base` doubling up to `backoff_max`). After
  `max_attempts` attempts, or at once for a permanent error (bad token, unknown channel, invalid payload),
  the row is `failed` with the reason, and logged. `monitor alerts redeliver` queues failed rows again,
  except those later transitions of their alert superseded (or, asked to, sends them marked as history).
- Every request is bounded as a whole by `notify.timeout` (monitor/notify/bounded.py), not per socket read.
- A 429 pauses the whole run (Slack's limit is per workspace method), the rest waits for the next run.
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
from monitor.config import Settings
from monitor.logs import redact, register_secret
from monitor.notify.transports import Job, Parent, SendError, Transport, make_transport
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
    """Sends due outbox rows through the configured transport (bot, webhook or console)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.engine = engine
        for secret in (settings.slack.bot_token, settings.slack.webhook_url):
            register_secret(secret.get_secret_value() if secret else None)
        self.transport = transport or make_transport(settings)
        self.rng = rng or random.Random()
        self.sleep = sleep
        timeout = settings.notify.timeout.total_seconds()
        # A claim outlives the longest delivery (lookup pages + update + post) by a wide margin.
        self.lease = timedelta(seconds=timeout * 14 + 60)

    @property
    def mode(self) -> str:
        return self.transport.name

    def deliver_due(self, now: datetime | None = None, *, wait: float = 0.0) -> DeliveryReport:
        """Send every due notification. `now` fixes the clock (tests). With `wait` > 0 (and no fixed
        `now`), keep going for up to that many seconds while retries come due (one-shot `monitor collect`)."""
        fixed = as_utc(now) if now is not None else None
        deadline = time.monotonic() + max(wait, 0.0)
        report = DeliveryReport()
        waiting = fixed is None and wait > 0
        while True:
            current = fixed or utcnow()
            row = outbox.claim_next(self.engine, current, current + self.lease)
            if row is not None:
                outcome = self._deliver(row, current, report)
                if outcome != "rate_limited":
                    continue
                if not waiting:  # Slack asked us to slow down: the rest waits for the next run
                    break
                due = outbox.get(self.engine, row.id).next_attempt_at  # type: ignore[arg-type, union-attr]
            elif not waiting:
                break
            else:
                due = outbox.next_due(self.engine)
                if due is None or due <= utcnow():  # nothing left, or only rows waiting behind others
                    break
            pause = max((due - utcnow()).total_seconds(), 0.05) if due is not None else 0.05
            if time.monotonic() + pause > deadline:
                break
            self.sleep(pause)
        return report

    # ------------------------------------------------------------------ one row

    def _deliver(self, row: Notification, now: datetime, report: DeliveryReport) -> str:
        assert row.id is not None
        context = {
            "notification": row.id,
            "fingerprint": row.fingerprint,
            "kind": row.kind,
            "attempt": row.attempts,
            "via": self.transport.name,
        }
        if row.slack_ts:  # a previous worker posted and recorded the ts, then stopped before finishing
            outbox.mark_delivered(
                self.engine,
                row.id,
                now=now,
                via=row.delivered_via or self.transport.name,
                channel=row.channel,
                ts=row.slack_ts,
            )
            report.delivered += 1
            log.info(
                "notification was already posted; marked delivered", extra={**context, "ts": row.slack_ts}
            )
            return "delivered"
        try:
            job = self._job(row)
            sent = self.transport.send(job)
        except SendError as exc:
            return self._failed_attempt(row, exc, now, report, context)
        except Exception as exc:  # a bug or an unexpected answer: retry with backoff, never lose the row
            log.exception("unexpected error delivering a notification", extra=context)
            error = SendError(
                f"unexpected error: {type(exc).__name__}: {exc}",
                transient=True,
                unknown=True,
                category="unexpected",
            )
            return self._failed_attempt(row, error, now, report, context)
        outbox.mark_delivered(
            self.engine, row.id, now=now, via=self.transport.name, channel=sent.channel, ts=sent.ts
        )
        report.delivered += 1
        metrics.record_notification(self.transport.name, row.kind, ok=True)
        log.info("notification delivered", extra={**context, "ts": sent.ts})
        return "delivered"

    def _failed_attempt(
        self, row: Notification, exc: SendError, now: datetime, report: DeliveryReport, context: dict
    ) -> str:
        assert row.id is not None
        metrics.record_notification(self.transport.name, row.kind, ok=False, reason=exc.category)
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

    def _job(self, row: Notification) -> Job:
        payload = json.loads(row.payload)
        parent = None
        episode = payload.get("episode_event_id")
        if row.kind in ("reminder", "resolved") and episode is not None:
            with Session(self.engine) as session:
                fired = outbox.for_event(session, int(episode))
                if (
                    fired is not None
                    and fired.status == "delivered"
                    and fired.delivered_via == "bot"
                    and fired.slack_ts
                ):
                    parent = Parent(
                        channel=fired.channel or "", ts=fired.slack_ts, payload=json.loads(fired.payload)
                    )
        hint = outbox.latest_channel_id(self.engine) if row.outcome_unknown else None
        return Job(
            id=row.id,
            kind=row.kind,
            payload=payload,
            outcome_unknown=row.outcome_unknown,  # type: ignore[arg-type]
            created_at=row.created_at,
            parent=parent,
            channel_hint=hint,
        )
