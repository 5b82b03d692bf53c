"""Queue digests for delivery: on schedule, once per period; or now, when asked (`monitor digest --send`).

A digest leaves like an alert does: rendered here, written to the notify stage's outbox as one row per
receiver, and delivered by the outbox worker with its retries (monitor/notify). On schedule the row is
written in the same transaction as the period's claim (monitor/store/digests.py), so with several replicas,
or after a restart, each period's digest is queued exactly once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from monitor.config import DEFAULT_RECEIVER, DigestConfig, Settings
from monitor.digest.content import DigestContent, build_digest
from monitor.digest.render import render_slack, render_text
from monitor.digest.schedule import Period, current_period, period_length
from monitor.store import digests as digest_store
from monitor.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)


class DigestSender:
    """The configured digest (`settings.digest`, or the defaults when the config has none)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.config: DigestConfig = settings.digest or DigestConfig()

    @property
    def topics(self) -> list[str]:
        return list(self.config.topics) or list(self.settings.topics)

    def build(
        self, period: Period, *, topics: list[str] | None = None, scheduled: bool = False
    ) -> DigestContent:
        return build_digest(
            self.engine,
            name=self.config.name,
            topics=topics or self.topics,
            period=period,
            timezone=self.config.timezone,
            schedule=self.config.period if scheduled else None,
            top_stories=self.config.top_stories,
        )

    def receivers(self) -> list[str]:
        """Where the digest goes, one outbox row each: `digest.receivers`, or `default` (the `slack:`
        destination, else the console). Until the configuration defines `receivers:`, any names given mean
        the default destination, which then gets the digest once."""
        if self.settings.receivers is None or not self.config.receivers:
            return [DEFAULT_RECEIVER]
        return list(dict.fromkeys(self.config.receivers))

    def payloads(self, content: DigestContent) -> list[dict[str, Any]]:
        """The outbox payloads: the message rendered for Slack and the console, and the digest's data."""
        text, blocks = render_slack(content, self.settings.http.public_url)
        start, end = (f"{at:%Y%m%dT%H%M%S}" for at in (content.period.start, content.period.end))
        base = {
            "kind": "digest",
            # The bot transport marks its post with `key` and looks for it before posting again after an
            # attempt whose outcome is unknown: the same period's digest never posts twice.
            # Also an e-mail's Message-ID: letters, digits, `.`, `-`, `_` only.
            "key": f"digest-{content.name}-{start}-{end}",
            "fingerprint": digest_store.fingerprint(content.name),
            "rendered": {"text": text, "blocks": blocks, "console": render_text(content)},
            "digest": content.as_dict(),
        }
        return [{**base, "receiver": receiver} for receiver in self.receivers()]

    def send_due(self, now: datetime | None = None) -> int | None:
        """The scheduled send: queue the latest period's digest once its time has come, unless it is claimed
        already or more than `grace` late. Returns the claim's id when this call queued it."""
        now = now or utcnow()
        period = current_period(self.config, now)
        if now - period.end > self.config.grace:
            return None  # missed while no process ran, long ago: the next period's digest comes on time
        if digest_store.is_claimed(self.engine, self.config.name, period.start):
            return None
        content = self.build(period, scheduled=True)
        claim_id = digest_store.claim(
            self.engine,
            name=self.config.name,
            period_start=period.start,
            period_end=period.end,
            now=now,
            receivers=self.receivers(),
            payloads=self.payloads(content),
        )
        if claim_id is not None:
            log.info(
                "digest queued",
                extra={
                    "digest": self.config.name,
                    "period_start": isoformat(period.start),
                    "claim": claim_id,
                },
            )
        return claim_id

    def send_now(self, content: DigestContent, now: datetime | None = None) -> list[int]:
        """Queue `content` now (`monitor digest --send`), whatever the schedule sent: the outbox row ids."""
        return digest_store.queue(
            self.engine, name=self.config.name, payloads=self.payloads(content), now=now or utcnow()
        )

    def period_since(self, since: datetime | None, now: datetime | None = None) -> Period:
        """`[since, now)` against the same length before; by default the configured period's length."""
        now = now or utcnow()
        return Period.ending(now, now - since if since is not None else period_length(self.config))
