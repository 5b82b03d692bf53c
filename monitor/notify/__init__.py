"""notify stage: the outbox worker and its transports (Slack bot, Slack webhook, console)."""

from monitor.notify.deliver import Deliverer, DeliveryReport
from monitor.notify.transports import SendError, parse_retry_after

__all__ = ["Deliverer", "DeliveryReport", "SendError", "parse_retry_after"]
