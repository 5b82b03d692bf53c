"""notify stage: the outbox worker, routes and receivers (Slack bot, Slack webhook, JSON webhook, e-mail,
console)."""

from monitor.notify.deliver import Deliverer, DeliveryReport
from monitor.notify.transports import SendError, parse_retry_after

__all__ = ["Deliverer", "DeliveryReport", "SendError", "parse_retry_after"]
