"""Digests: a periodic summary per topic, sent through the notify stage's outbox like an alert.

- `schedule`: when a digest is due (local time of day, IANA zone, daily or weekly, the DST rule).
- `content`: what it says (stories, sentiment and volume against the period before, top stories, alerts).
- `render`: text for the terminal and console, Block Kit for Slack.
- `send`: queue it, on schedule once per period (a durable claim) or now.
"""

from monitor.digest.content import DigestContent, build_digest
from monitor.digest.render import render_slack, render_text
from monitor.digest.schedule import Period, current_period, due_at
from monitor.digest.send import DigestSender

__all__ = [
    "DigestContent",
    "DigestSender",
    "Period",
    "build_digest",
    "current_period",
    "due_at",
    "render_slack",
    "render_text",
]
