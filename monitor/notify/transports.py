"""The receiver interface (`Receiver`, what one outbox row is sent through) and its chat kinds: Slack with a
bot token, a Slack incoming webhook, the console/log. The generic webhook and e-mail are in webhook.py and
email.py; receivers.py builds the configured ones by name.

Every receiver raises `SendError` for a failed attempt, classified so the deliverer knows whether to
retry, when, and whether the message might have been posted anyway (`unknown`).
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.error import URLError

from slack_sdk.errors import SlackApiError

from monitor.config import (
    DEFAULT_RECEIVER,
    ConsoleReceiverConfig,
    Settings,
    SlackBotReceiverConfig,
    SlackWebhookReceiverConfig,
)
from monitor.notify.bounded import BoundedWebClient, BoundedWebhookClient
from monitor.notify.message import render_console, render_resolved_original, render_slack
from monitor.timeutil import utcnow

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER = 3600.0
# ok:false errors worth retrying; any other error code is a permanent failure (bad token, channel, payload).
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
NETWORK_ERRORS = (URLError, TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException, OSError)
METADATA_EVENT = "aichip_monitor_alert"
# slack_sdk logs every failed call at ERROR (e.g. a 503's HTML body); the deliverer reports each failed
# attempt itself, with its outcome, so the SDK's own lines are kept out of the log.
_sdk_log = logging.getLogger("monitor.notify.sdk")
_sdk_log.setLevel(logging.CRITICAL)
LOOKUP_SLACK = timedelta(minutes=10)
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


class SendError(Exception):
    """One failed attempt. `retry_after`: seconds Slack asked to wait; `unknown`: it may have been posted."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        unknown: bool = False,
        category: str = "rejected",
    ):
        super().__init__(reason)
        self.reason = reason
        self.category = category  # for metrics: rate_limited | server_error | network | rejected | unexpected
        self.transient = transient
        self.retry_after = retry_after
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class Sent:
    channel: str | None = None
    ts: str | None = None


@dataclass(frozen=True, slots=True)
class Parent:
    """The episode's original message (for threading, and for chat.update when it resolves)."""

    channel: str
    ts: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    """What a transport needs to send one notification."""

    id: int
    kind: str
    payload: dict[str, Any]
    outcome_unknown: bool
    created_at: datetime
    parent: Parent | None
    channel_hint: str | None  # a channel ID for the marker lookup when the configured channel is a name
    receiver: str = DEFAULT_RECEIVER  # the configured receiver's name (`default`: the `slack:` destination)


class Receiver(Protocol):
    """One kind of destination. `name` says how it delivers (stored as `delivered_via`: bot, webhook,
    console, http, smtp); `send` delivers one notification or raises a classified `SendError`. Each class
    also has `from_config(config, settings)` (monitor/notify/receivers.py builds them by kind)."""

    name: str

    def send(self, job: Job) -> Sent: ...


Transport = Receiver  # the name before receivers existed


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as delta-seconds (`30`, `1.5`) or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            return value[0] if isinstance(value, list | tuple) and value else value
    return None


def classify_http(status: int, error: str | None, headers: Any) -> SendError:
    """Turn a failed Slack HTTP answer into a SendError."""
    detail = f"HTTP {status}" + (f" {error[:200]}" if error else "")
    if status == 429 or error in ("ratelimited", "rate_limited"):
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        return SendError(
            f"rate limited ({detail})",
            transient=True,
            retry_after=retry_after if retry_after is not None else 1.0,
            category="rate_limited",
        )
    if status in RETRY_STATUSES:
        return SendError(
            f"Slack server error ({detail})", transient=True, unknown=True, category="server_error"
        )
    if status == 408:
        return SendError(
            f"Slack request timeout ({detail})", transient=True, unknown=True, category="network"
        )
    if status == 200 and error in TRANSIENT_ERRORS:
        return SendError(f"Slack error {error}", transient=True, unknown=True, category="server_error")
    return SendError(f"Slack rejected the message ({detail})", transient=False)


def _api_error(exc: SlackApiError) -> SendError:
    response = exc.response
    status = getattr(response, "status_code", 200) or 200
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return classify_http(int(status), error, getattr(response, "headers", None))


def _network_error(exc: BaseException) -> SendError:
    return SendError(
        f"network error: {type(exc).__name__}: {exc}", transient=True, unknown=True, category="network"
    )


# ----------------------------------------------------------------------------- console


class ConsoleTransport:
    """No Slack settings: the notification is logged (and still stored and marked delivered)."""

    name = "console"

    @classmethod
    def from_config(cls, config: ConsoleReceiverConfig, settings: Settings) -> ConsoleTransport:
        return cls()

    def send(self, job: Job) -> Sent:
        level = logging.INFO if job.kind in ("resolved", "digest") else logging.WARNING
        log.log(
            level,
            "%s\n%s",
            "DIGEST" if job.kind == "digest" else f"ALERT {job.kind}",
            render_console(job.payload),
            extra={"fingerprint": job.payload.get("fingerprint"), "kind": job.kind},
        )
        return Sent()


# ----------------------------------------------------------------------------- webhook


class WebhookTransport:
    """SLACK_WEBHOOK_URL: a message per transition (webhooks cannot edit or thread). Never raises on HTTP
    errors, so the status is checked here."""

    name = "webhook"

    def __init__(self, *, url: str, timeout: float, public_url: str | None) -> None:
        self.public_url = public_url
        self.client = BoundedWebhookClient(
            url,
            total_timeout=timeout,  # the whole request, not each read
            retry_handlers=[],
            logger=_sdk_log,
        )

    @classmethod
    def from_config(cls, config: SlackWebhookReceiverConfig, settings: Settings) -> WebhookTransport:
        return cls(
            url=config.url.get_secret_value(),
            timeout=settings.notify.timeout.total_seconds(),
            public_url=settings.http.public_url,
        )

    def send(self, job: Job) -> Sent:
        text, blocks = render_slack(job.payload, self.public_url)
        try:
            response = self.client.send(text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        except NETWORK_ERRORS as exc:
            raise _network_error(exc) from None
        if response.status_code == 200:
            return Sent()
        body = (response.body or "").strip()[:200]
        raise classify_http(response.status_code, body or None, response.headers)


# ----------------------------------------------------------------------------- bot


class BotTransport:
    """SLACK_BOT_TOKEN + SLACK_CHANNEL: chat.postMessage; reminders and the resolved notice reply in the
    alert's thread, and the original message is edited (chat.update) to show it resolved.

    Every post carries a metadata marker. When an earlier attempt may have reached Slack (timeout, 5xx,
    a crash while sending), the channel (or thread) is searched for the marker before posting again.
    """

    name = "bot"

    def __init__(
        self, *, token: str, channel: str, api_url: str | None, timeout: float, public_url: str | None
    ) -> None:
        self.channel = channel
        self.public_url = public_url
        kwargs: dict[str, Any] = {}
        if api_url:
            kwargs["base_url"] = api_url.rstrip("/") + "/"
        self.client = BoundedWebClient(
            token=token,
            total_timeout=timeout,  # the whole request, not each read
            retry_handlers=[],
            logger=_sdk_log,
            **kwargs,
        )
        self._lookup_warned = False

    @classmethod
    def from_config(cls, config: SlackBotReceiverConfig, settings: Settings) -> BotTransport:
        """The receiver's own token and API URL, else the `slack:` ones (SLACK_BOT_TOKEN, SLACK_API_URL)."""
        token = config.token or settings.slack.bot_token
        assert token is not None  # checked at config load
        return cls(
            token=token.get_secret_value(),
            channel=config.channel,
            api_url=config.api_url or settings.slack.api_url,
            timeout=settings.notify.timeout.total_seconds(),
            public_url=settings.http.public_url,
        )

    def send(self, job: Job) -> Sent:
        key = str(job.payload.get("key") or f"notification-{job.id}")
        parent = job.parent
        if job.kind == "resolved" and parent is not None:
            self._update_original(job, parent)
        thread_ts = parent.ts if parent is not None and job.kind in ("reminder", "resolved") else None
        channel = parent.channel if thread_ts else self.channel
        if job.outcome_unknown:
            found = self._find_posted(job, key, channel, thread_ts)
            if found is not None:
                log.info(
                    "message already posted by an earlier attempt; not posting again",
                    extra={"notification": job.id, "ts": found.ts},
                )
                return found
        text, blocks = render_slack(job.payload, self.public_url)
        args: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": {
                "event_type": METADATA_EVENT,
                "event_payload": {
                    "key": key,
                    "fingerprint": str(job.payload.get("fingerprint")),
                    "kind": job.kind,
                },
            },
        }
        if thread_ts:
            args["thread_ts"] = thread_ts
            # A reminder is shown in the channel too; one sent late as history stays in its thread.
            args["reply_broadcast"] = job.kind == "reminder" and not job.payload.get("history")
        response = self._call(self.client.chat_postMessage, **args)
        return Sent(channel=response.get("channel") or channel, ts=response.get("ts"))

    def _update_original(self, job: Job, parent: Parent) -> None:
        """Edit the fired message to show it resolved. Idempotent, so a retry may repeat it safely."""
        text, blocks = render_resolved_original(parent.payload, job.payload, self.public_url)
        try:
            self._call(
                self.client.chat_update, channel=parent.channel, ts=parent.ts, text=text, blocks=blocks
            )
        except SendError as exc:
            if exc.transient:
                raise
            log.warning(
                "could not edit the original alert message; posting the resolved notice anyway",
                extra={"notification": job.id, "reason": exc.reason},
            )

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except SlackApiError as exc:
            raise _api_error(exc) from None
        except NETWORK_ERRORS as exc:
            raise _network_error(exc) from None

    def _find_posted(self, job: Job, key: str, channel: str, thread_ts: str | None) -> Sent | None:
        """Look for a message carrying `key` posted since the notification was created."""
        if thread_ts is None and not _CHANNEL_ID.match(channel):
            channel = job.channel_hint or channel
        oldest = f"{(job.created_at - LOOKUP_SLACK).timestamp():.6f}"  # tolerates clock skew with Slack
        cursor: str | None = None
        try:
            for _ in range(10):  # at most 10 pages of 200 messages
                if thread_ts:
                    response = self.client.conversations_replies(
                        channel=channel,
                        ts=thread_ts,
                        oldest=oldest,
                        include_all_metadata=True,
                        limit=200,
                        cursor=cursor,
                    )
                else:
                    response = self.client.conversations_history(
                        channel=channel, oldest=oldest, include_all_metadata=True, limit=200, cursor=cursor
                    )
                for message in response.get("messages") or []:
                    payload = (message.get("metadata") or {}).get("event_payload") or {}
                    if payload.get("key") == key:
                        return Sent(channel=response.get("channel") or channel, ts=message.get("ts"))
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    return None
            return None
        except SlackApiError as exc:
            error = _api_error(exc)
            if error.transient:
                error.unknown = True
                raise error from None
            if not self._lookup_warned:
                log.warning(
                    "cannot search the channel for an earlier post (grant channels:history and use a channel "
                    "ID to close this window); posting again, a duplicate is possible",
                    extra={"reason": error.reason},
                )
                self._lookup_warned = True
            return None
        except NETWORK_ERRORS as exc:
            raise _network_error(exc) from None


def make_transport(settings: Settings) -> Receiver:
    """The `default` receiver: the `slack:` settings' destination (bot, webhook), else the console."""
    slack, public_url = settings.slack, settings.http.public_url
    timeout = settings.notify.timeout.total_seconds()
    if slack.mode == "bot":
        assert slack.bot_token is not None and slack.channel
        return BotTransport(
            token=slack.bot_token.get_secret_value(),
            channel=slack.channel,
            api_url=slack.api_url,
            timeout=timeout,
            public_url=public_url,
        )
    if slack.mode == "webhook":
        assert slack.webhook_url is not None
        url = slack.webhook_url.get_secret_value()
        return WebhookTransport(url=url, timeout=timeout, public_url=public_url)
    return ConsoleTransport()
