"""The metric registry (`monitor.alerts.metrics.METRICS`) is the one source of what a metric is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from monitor.alerts import metrics
from monitor.alerts.explain import rule_facts
from monitor.alerts.metrics import (
    METRICS,
    UNIT_FORMATS,
    Evidence,
    MetricInput,
    MetricSpec,
    format_value,
    headline_order,
    measure,
    metric_label,
)
from monitor.alerts.replay import SeriesStats, replay_rule
from monitor.config import AlertRuleConfig, Metric
from monitor.metric_names import METRIC_NAMES, NEEDS_BASELINE
from monitor.notify.message import render_console, render_slack
from monitor.store.windows import HeadlineOrder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_the_config_names_and_the_registry_agree() -> None:
    assert set(get_args(Metric)) == set(METRIC_NAMES) == set(METRICS)
    assert {name for name, spec in METRICS.items() if spec.needs_baseline} == NEEDS_BASELINE
    assert AlertRuleConfig(name="r", topic="t", metric="volume_ratio", above=2, window="6h").baseline == (
        timedelta(hours=24)
    )


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_spec_is_complete(name: str) -> None:
    spec = METRICS[name]
    assert spec.name == name and spec.label and spec.unit in UNIT_FORMATS
    assert spec.evidence in get_args(Evidence) and callable(spec.compute)
    for direction in ("above", "below"):
        for resolved in (False, True):
            assert spec.headline_order(direction, resolved) in get_args(HeadlineOrder)
    assert spec.format(None) == "n/a" and isinstance(spec.format(0.5), str)
    assert isinstance(spec.baseline_text(0.5, "stories"), str)


def test_values_are_written_as_before() -> None:
    written = {name: format_value(name, 0.425) for name in METRIC_NAMES}
    assert written == {
        "mean_sentiment": "+0.42",
        "negative_share": "42%",
        "positive_share": "42%",
        "volume": "0",
        "volume_ratio": "0.4×",
        "sentiment_shift": "+0.42",
        "coverage_share": "42%",
    }
    assert format_value("unknown", -0.5) == "-0.50" and metric_label("unknown") == "unknown"


def _neutral_share(x: MetricInput) -> tuple[float | None, float | None]:
    """A made-up metric: the share of the window labelled neither negative nor positive."""

    def share(s: metrics.WindowStats) -> float | None:
        return (s.count - s.negative - s.positive) / s.count if s.count else None

    assert x.baseline is not None
    return share(x.window), share(x.baseline)


NEUTRAL = MetricSpec(
    "neutral_share",
    "Neutral share",
    "share",
    compute=_neutral_share,
    headline_order=lambda direction, resolved: "most_covered",
    needs_baseline=True,
    baseline_text=lambda value, unit: f"neutral {value:.0%}",
)


def test_a_metric_registered_in_the_registry_alone_is_measured_and_explained_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(METRICS, NEUTRAL.name, NEUTRAL)
    base = AlertRuleConfig(name="calm", topic="nvidia", metric="mean_sentiment", above=0.5, window="1h")
    # The config only knows the built-in names; the registry is what the engine, replay and messages read.
    rule = base.model_copy(
        update={
            "metric": "neutral_share",
            "count": "articles",
            "baseline": timedelta(hours=2),
            "min_articles": 3,
        }
    )
    # Two polarised hours (the baseline), then an hour of neutral news.
    rows = [(T0 + (5 + i * 10) * MIN, -0.6, "negative") for i in range(12)]  # 09:05 … 10:55
    rows += [(T0 + (125 + i * 10) * MIN, 0.0, "neutral") for i in range(6)]  # 11:05 … 11:55
    now = T0 + timedelta(hours=3)

    m = measure(rule, SeriesStats(rows), now)
    assert (m.value, m.baseline_value, m.count, m.baseline_count, m.enough) == (1.0, 0.0, 6, 12, True)

    events = replay_rule(rule, rows, T0, now)
    assert [e.kind for e in events] == ["fired"]
    # 11:25: 10:35, 10:45 and 10:55 (negative) and 11:05, 11:15 and 11:25 (neutral) in the window: 50%.
    assert events[0].at == T0 + 145 * MIN

    assert headline_order(rule) == "most_covered"
    facts = rule_facts(rule, m, "fired", None, now)
    assert facts["baseline_seconds"] == 7200 and facts["metric"] == "neutral_share"
    payload = {**facts, "fingerprint": "f00d", "stories": 6, "sources": 2, "articles": 6, "headlines": []}
    text, blocks = render_slack(payload)
    assert "neutral share 100%" in text and "(threshold ≥ 50%)" in text
    summary = blocks[1]["text"]["text"]
    assert "*Neutral share* is *100%*" in summary
    assert "Baseline: the 2h before · neutral 0% (12 articles)" in summary
    assert "fires with ≥ 3 articles" in summary
    assert "Neutral share is 100%" in render_console(payload)


def test_the_made_up_metric_is_gone_after_the_test() -> None:
    assert "neutral_share" not in METRICS
    assert format_value("neutral_share", 1.0) == "+1.00"
