"""The alert metrics' names, for the config to validate against (dependency-free: the config is the edge).

Everything else about a metric (label, unit, how it is computed, its evidence, its headline order) is its
`MetricSpec` in `monitor.alerts.metrics.METRICS`; tests/test_metric_registry.py checks the two agree.
"""

from __future__ import annotations

METRIC_NAMES = (
    "mean_sentiment",
    "negative_share",
    "positive_share",
    "volume",
    "volume_ratio",
    "sentiment_shift",
    "coverage_share",
)

# Compared with the `baseline` period just before the window: the config defaults it to four windows.
NEEDS_BASELINE = frozenset({"volume_ratio", "sentiment_shift"})
