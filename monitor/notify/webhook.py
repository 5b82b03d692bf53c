"""The generic JSON webhook receiver (`kind: webhook`): one POST per notification, optionally signed.

The body is `webhook_payload` below (documented in the README, "Receivers"): stable top-level fields for a
consumer to read, the stored explanation under `details`. With a `secret`, the header
`X-Monitor-Signature: sha256=<hex>` carries HMAC-SHA256 of the exact body bytes under that key, so the
receiver can tell the monitor's posts from anyone else's. `key` (also `X-Monitor-Key`) is the same on every
attempt of one notification: a receiver that saw an answer lost in transit deduplicates on it.

Answers: 2xx delivered; 429 waits Retry-After; 408 and 5xx are retried with backoff (the outage is
temporary); 410 Gone means the endpoint was removed on purpose, so it fails at once, as does any other 4xx
or a redirect (a POST is never re-sent elsewhere). The request is bounded as a whole by `notify.timeout`
(monitor/notify/bounded.py), like Slack's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request

from monitor.config import Settings, WebhookReceiverConfig
from monitor.notify.bounded import open_bounded
from monitor.notify.message import dashboard_link, render_console
from monitor.notify.transports import (
    NETWORK_ERRORS,
    Job,
    SendError,
    Sent,
    _header,
    _network_error,
    parse_retry_after,
)

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Monitor-Signature"
KEY_HEADER = "X-Monitor-Key"
USER_AGENT = "aichip-monitor-webhook/1"
# Facts that only serve the monitor's own delivery (markers, rendered Slack blocks): not part of `details`.
_INTERNAL = frozenset({"v", "key", "rendered", "episode_event_id", "receiver"})
_ALERT_FIELDS = (
    "fingerprint",
    "rule",
    "topic",
    "severity",
    "metric",
    "direction",
    "value",
    "threshold",
    "clear",
    "window_seconds",
    "unit",
    "count",
    "stories",
    "sources",
    "articles",
    "at",
    "fired_at",
    "reason",
)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of `body` under `secret`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_payload(job: Job, receiver: str, public_url: str | None = None) -> dict[str, Any]:
    """The JSON body for one notification (an alert transition or a digest)."""
    p = job.payload
    text = render_console(p)
    body: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "receiver": receiver,
        "notification_id": job.id,
        "key": str(p.get("key") or f"notification-{job.id}"),
        "kind": job.kind,
        "title": text.split("\n", 1)[0],
        "text": text,
        "history": bool(p.get("history")),
    }
    if job.kind == "digest":
        body.update(alert=None, headlines=[], digest=p.get("digest"), dashboard_url=None)
    else:
        alert = {name: p.get(name) for name in _ALERT_FIELDS}
        alert["status"] = "resolved" if job.kind == "resolved" else "firing"
        body.update(
            alert=alert,
            headlines=[_headline(h) for h in p.get("headlines") or []],
            dashboard_url=dashboard_link(public_url, str(p.get("topic") or "")),
        )
    body["details"] = {k: v for k, v in p.items() if k not in _INTERNAL}
    return body


def _headline(h: dict[str, Any]) -> dict[str, Any]:
    keys = ("title", "url", "source", "score", "label", "sources", "articles", "story_id", "new")
    return {key: h.get(key) for key in keys}


class JsonWebhookReceiver:
    """POSTs `webhook_payload` as JSON to the configured URL."""

    name = "http"

    def __init__(
        self, *, receiver: str, url: str, secret: str | None, timeout: float, public_url: str | None
    ) -> None:
        self.receiver = receiver
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.public_url = public_url

    @classmethod
    def from_config(cls, config: WebhookReceiverConfig, settings: Settings) -> JsonWebhookReceiver:
        return cls(
            receiver=config.name,
            url=config.url.get_secret_value(),
            secret=config.secret.get_secret_value() if config.secret else None,
            timeout=settings.notify.timeout.total_seconds(),
            public_url=settings.http.public_url,
        )

    def send(self, job: Job) -> Sent:
        payload = webhook_payload(job, self.receiver, self.public_url)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            KEY_HEADER: payload["key"],
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        request = Request(self.url, data=body, headers=headers, method="POST")
        try:
            open_bounded(request, self.timeout, None, redirects=False)
        except HTTPError as exc:
            raise classify_webhook(exc.code, _excerpt(exc), exc.headers) from None
        except NETWORK_ERRORS as exc:
            raise _network_error(exc) from None
        return Sent()


def _excerpt(exc: HTTPError) -> str | None:
    try:
        text = exc.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None
    return " ".join(text.split())[:200] or None


def classify_webhook(status: int, body: str | None, headers: Any) -> SendError:
    """A webhook's failed answer as a SendError: retry (429, 408, 5xx) or give up (410, other 4xx, 3xx)."""
    detail = f"HTTP {status}" + (f" {body}" if body else "")
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        return SendError(
            f"webhook rate limited ({detail})",
            transient=True,
            retry_after=retry_after if retry_after is not None else 1.0,
            category="rate_limited",
        )
    if status >= 500 or status == 408:
        return SendError(f"webhook server error ({detail})", transient=True, category="server_error")
    if status == 410:
        return SendError(
            f"webhook endpoint is gone ({detail}): not retried; fix the receiver's url, then "
            "`monitor alerts redeliver`",
            transient=False,
        )
    if 300 <= status < 400:
        return SendError(
            f"webhook answered a redirect ({detail}): set the receiver's url to the final address",
            transient=False,
        )
    return SendError(f"webhook rejected the notification ({detail})", transient=False)
