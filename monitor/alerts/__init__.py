"""alerts stage: window metrics per topic, the alert lifecycle, transitions written with their outbox row."""

from monitor.alerts.engine import RuleEngine
from monitor.alerts.replay import ReplayEvent, replay
from monitor.store.alerts import fingerprint

__all__ = ["ReplayEvent", "RuleEngine", "fingerprint", "replay"]
