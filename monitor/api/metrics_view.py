"""`/metrics`: the process counters plus gauges read from the database at scrape time.

Stored state (alerts by state, the notification outbox, each feed's last successful poll) is read
from the database when Prometheus scrapes, so every replica reports the same truth - also one that
is not the leader and therefore polls nothing itself.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.engine import Engine

from monitor import metrics
from monitor.store import alerts as alert_store
from monitor.store import feeds as feed_store
from monitor.store import outbox as outbox_store

log = logging.getLogger(__name__)

ALERT_STATES = ("inactive", "pending", "firing", "resolved")
OUTBOX_STATUSES = ("pending", "sending", "delivered", "failed")


class DatabaseCollector:
    """A prometheus_client collector that queries the database on each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> list:
        return []  # computed at scrape; nothing to pre-register

    def collect(self):  # noqa: ANN201 - prometheus_client protocol
        alerts = GaugeMetricFamily(
            "monitor_alerts", "Alert identities by current state (from the database).", labels=["state"]
        )
        outbox = GaugeMetricFamily(
            "monitor_notifications_outbox", "Outbox notifications by status.", labels=["status"]
        )
        up = GaugeMetricFamily("monitor_database_up", "1 when the database answered this scrape.")
        try:
            with self.engine.connect() as connection:
                by_state = alert_store.count_by_state(connection)
                by_status = outbox_store.count_by_status(connection)
                last_success = feed_store.last_successes(connection)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB is down
            log.warning("metrics: database unavailable", extra={"error": str(exc).splitlines()[0][:200]})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for state in sorted(set(ALERT_STATES) | set(by_state)):
            alerts.add_metric([state], by_state.get(state, 0))
        for status in sorted(set(OUTBOX_STATUSES) | set(by_status)):
            outbox.add_metric([status], by_status.get(status, 0))
        # The process gauge only knows polls this process made; the database knows them all.
        for name, at in last_success:
            gauge = metrics.FEED_LAST_SUCCESS.labels(feed=name)
            if at.timestamp() > gauge._value.get():  # noqa: SLF001 - read the current value
                gauge.set(at.timestamp())
        yield alerts
        yield outbox
        yield up


def render(engine: Engine) -> bytes:
    """The exposition text: database gauges first (they refresh the feed gauge), then the process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine))
    scraped = generate_latest(registry)
    return scraped + generate_latest(metrics.REGISTRY)
