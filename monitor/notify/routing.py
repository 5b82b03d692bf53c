"""Routes: which receivers get an alert's notifications (configured under `routes:`, Alertmanager's terms).

Routes are tried in order. A route matches when every matcher it gives matches (rule, topic, severity; each
a name or a list of names, `*` and `?` as wildcards); the first match wins, and `continue: true` lets the next
routes be tried too, so an alert can reach several receivers. An alert no route matches goes to the `default`
receiver (the `slack:` destination, else the console), so nothing is ever routed nowhere; with no `routes:`
at all every alert goes there, which is exactly the behaviour of a configuration from before receivers.

Routing happens when a transition is written (inside its transaction): each receiver named gets its own
outbox row, so one receiver's outage never holds back or duplicates another's delivery.
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlmodel import Session

from monitor.config import DEFAULT_RECEIVER, RouteConfig, Settings
from monitor.store import outbox
from monitor.store.tables import Notification


def route_matches(route: RouteConfig, rule: str, topic: str, severity: str) -> bool:
    """Every matcher the route gives matches (an absent matcher matches anything)."""
    return (
        _any(route.rule, rule)
        and _any(route.topic, topic)
        and (not route.severity or severity in route.severity)
    )


def _any(patterns: list[str], value: str) -> bool:
    return not patterns or any(fnmatchcase(value, pattern) for pattern in patterns)


class Router:
    """The configured routes, applied to (rule, topic, severity)."""

    def __init__(self, settings: Settings) -> None:
        self.routes: list[RouteConfig] = list(settings.routes or [])

    def receivers(self, rule: str, topic: str, severity: str) -> list[str]:
        """The receivers of an alert, in route order, each once; `default` when no route matches."""
        names: list[str] = []
        for route in self.routes:
            if not route_matches(route, rule, topic, severity):
                continue
            names.extend(name for name in route.receivers if name not in names)
            if not route.continue_:
                break
        return names or [DEFAULT_RECEIVER]

    def enqueue(
        self,
        session: Session,
        *,
        alert_event_id: int | None,
        fingerprint: str,
        kind: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> list[Notification]:
        """`outbox.enqueue` once per receiver the payload's rule, topic and severity are routed to (call it
        inside the transition's transaction, as `outbox.enqueue`)."""
        receivers = self.receivers(
            str(payload.get("rule")), str(payload.get("topic")), str(payload.get("severity") or "warning")
        )
        return [
            outbox.enqueue(
                session,
                alert_event_id=alert_event_id,
                fingerprint=fingerprint,
                kind=kind,
                payload=payload,
                now=now,
                receiver=receiver,
            )
            for receiver in receivers
        ]
