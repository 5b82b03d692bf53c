"""The configured receivers, by name: what the outbox worker sends each row through.

Every receiver is one class behind one interface (`Receiver`, monitor/notify/transports.py): a `name` (how
it delivers, stored as `delivered_via`), `send(job) -> Sent` raising a classified `SendError`, and a
`from_config(config, settings)` constructor. Adding a kind is one config model (monitor/config.py, a member
of `ReceiverConfig`) and one class registered in `KINDS`.

`default` always exists: the `slack:` settings' destination (bot, webhook, else the console), exactly what
every notification went to before receivers existed. A receiver the configuration names `default` takes its
place.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from monitor.config import DEFAULT_RECEIVER, Settings
from monitor.logs import register_secret
from monitor.notify.email import EmailReceiver
from monitor.notify.transports import (
    BotTransport,
    ConsoleTransport,
    Receiver,
    WebhookTransport,
    make_transport,
)
from monitor.notify.webhook import JsonWebhookReceiver

KINDS: dict[str, Any] = {
    "slack_bot": BotTransport,
    "slack_webhook": WebhookTransport,
    "webhook": JsonWebhookReceiver,
    "email": EmailReceiver,
    "console": ConsoleTransport,
}

__all__ = ["DEFAULT_RECEIVER", "KINDS", "Receiver", "build_receivers"]


def build_receivers(settings: Settings) -> dict[str, Receiver]:
    """Every receiver by name, `default` included; their secrets are registered for redaction first."""
    for secret in (settings.slack.bot_token, settings.slack.webhook_url):
        register_secret(secret.get_secret_value() if secret else None)
    receivers: dict[str, Receiver] = {DEFAULT_RECEIVER: make_transport(settings)}
    for config in settings.receivers or []:
        for value in vars(config).values():
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
        receivers[config.name] = KINDS[config.kind].from_config(config, settings)
    return receivers
