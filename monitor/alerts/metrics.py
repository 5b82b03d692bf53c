"""Rule metrics over a window, computed from window statistics (live SQL or in-memory replay alike).

A window counts the rule's `count` unit (`monitor.store.windows`): `stories` by default, one vote per story
(the mean of its articles' topic sentiment in the window, its majority label), so ten copies of one wire
story weigh what one independent report weighs; `articles` counts every copy, as before stories existed.

Metrics, for the rule's topic in the window `(now - window, now]`, per counted unit:
- `mean_sentiment`: mean topic sentiment in [-1, 1].
- `negative_share` / `positive_share`: share labelled negative / positive.
- `volume`: the number of stories (articles).
- `volume_ratio`: the window's rate divided by the baseline's rate. The baseline is the `baseline` period just
  before the window; an empty baseline counts as one so the ratio stays finite.
- `sentiment_shift`: window mean minus baseline mean.
- `coverage_share`: the topic's stories divided by all stories in the window that carry at least one
  configured topic (articles likewise with `count: articles`): how much of the AI-chip news is about it.
  For `ai_bubble` this is the bubble index: `above: 0.3` fires when bubble talk dominates the coverage.

Evidence:
- `min_articles` applies to the counted unit: sentiment metrics and `coverage_share` need that many in the
  window (and, for `sentiment_shift`, in the baseline too); `volume_ratio` needs them in the window to fire;
  `volume` is the count itself, so it does not apply to it.
- `min_sources`: the window's stories must come from at least that many distinct publishers before the rule
  may fire. It never holds an alert that would clear: too few publishers is no reason to keep ringing.

Every fact about a metric is its `MetricSpec` in `METRICS`, the one registry: its label, how a value is
written, whether it needs a baseline or the coverage total, how it is computed, what evidence it asks for
and how its headlines are ordered. `measure`, `clears`, `headline_order`, the replay, the explanation, the
messages and the CLI read it from there; the config validates names against `monitor.metric_names`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from monitor.config import AlertRuleConfig
from monitor.store.windows import EMPTY, HeadlineOrder, WindowStats

StatsFn = Callable[[datetime, datetime], WindowStats]
# Stories (articles) in a window carrying any configured topic: coverage_share's denominator.
TotalFn = Callable[[datetime, datetime], int]

# How a value is written: a signed score, a percentage, a whole count, a ratio.
Unit = Literal["score", "share", "count", "ratio"]
UNIT_FORMATS: dict[str, Callable[[float], str]] = {
    "score": lambda v: f"{v:+.2f}",
    "share": lambda v: f"{v:.0%}",
    "count": lambda v: f"{v:.0f}",
    "ratio": lambda v: f"{v:.1f}×",
}
# What `min_articles` means for a metric:
# - "count": nothing, the count is the metric;
# - "window": that many in the window to fire; thin coverage may still clear;
# - "sentiment": that many in the window (and the baseline) to fire or to clear; too few holds the alert.
Evidence = Literal["count", "window", "sentiment"]


@dataclass(frozen=True, slots=True)
class MetricInput:
    """What a metric is computed from at one moment."""

    rule: AlertRuleConfig
    window: WindowStats
    baseline: WindowStats | None  # when the spec needs_baseline (EMPTY for a zero-length baseline)
    coverage: int | None  # when the spec needs_coverage: the window's stories on any configured topic


# (metric input) -> (value, baseline value); None: undefined.
ComputeFn = Callable[[MetricInput], tuple[float | None, float | None]]
# (rule direction, resolved) -> the order that explains the turn.
OrderFn = Callable[[Literal["above", "below"], bool], HeadlineOrder]


def _baseline_mean(value: float, unit: str) -> str:
    return f"mean {value:+.2f}"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Everything about one metric; register it in `METRICS` (and its name in monitor/metric_names.py)."""

    name: str
    label: str  # "Mean sentiment": message titles and lines (lower-cased inside sentences)
    unit: Unit  # how a value (and the threshold, the clear level) is written
    compute: ComputeFn
    headline_order: OrderFn
    evidence: Evidence = "window"
    needs_baseline: bool = False  # compared with the `baseline` period before the window
    needs_coverage: bool = False  # reads the window's stories on any configured topic
    # The baseline line of a message: (baseline value, counted unit) -> text.
    baseline_text: Callable[[float, str], str] = _baseline_mean

    def format(self, value: float | None) -> str:
        return "n/a" if value is None else UNIT_FORMATS[self.unit](value)


def _recent(direction: str, resolved: bool) -> HeadlineOrder:
    return "recent"


def _most_covered(direction: str, resolved: bool) -> HeadlineOrder:
    return "most_covered"


def _turn(negative_when: Literal["above", "below"]) -> OrderFn:
    """Most negative stories for a negative turn, most positive for a positive one (reversed on resolve):
    the turn is negative when the rule's direction is `negative_when`."""

    def order(direction: Literal["above", "below"], resolved: bool) -> HeadlineOrder:
        negative_turn = (direction == negative_when) != resolved
        return "most_negative" if negative_turn else "most_positive"

    return order


def _volume_ratio(x: MetricInput) -> tuple[float | None, float | None]:
    assert x.baseline is not None and x.rule.baseline is not None
    window_rate = x.window.count / x.rule.window.total_seconds()
    baseline_rate = max(x.baseline.count, 1) / x.rule.baseline.total_seconds()
    return window_rate / baseline_rate, x.baseline.count / (x.rule.baseline.total_seconds() / 3600)


def _sentiment_shift(x: MetricInput) -> tuple[float | None, float | None]:
    assert x.baseline is not None
    mean, base = x.window.mean, x.baseline.mean
    return (None if mean is None or base is None else mean - base), base


def _coverage_share(x: MetricInput) -> tuple[float | None, float | None]:
    return (x.window.count / x.coverage if x.coverage else None), None


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {spec.name: spec for spec in specs}


METRICS: dict[str, MetricSpec] = _specs(
    MetricSpec(
        "mean_sentiment",
        "Mean sentiment",
        "score",
        compute=lambda x: (x.window.mean, None),
        headline_order=_turn(negative_when="below"),
        evidence="sentiment",
    ),
    MetricSpec(
        "negative_share",
        "Negative share",
        "share",
        compute=lambda x: (x.window.neg_share, None),
        headline_order=_turn(negative_when="above"),
        evidence="sentiment",
    ),
    MetricSpec(
        "positive_share",
        "Positive share",
        "share",
        compute=lambda x: (x.window.pos_share, None),
        headline_order=_turn(negative_when="below"),
        evidence="sentiment",
    ),
    MetricSpec(
        "volume",
        "Volume",
        "count",
        compute=lambda x: (float(x.window.count), None),
        headline_order=_recent,
        evidence="count",
    ),
    MetricSpec(
        "volume_ratio",
        "Volume ratio",
        "ratio",
        compute=_volume_ratio,
        headline_order=_recent,
        needs_baseline=True,
        baseline_text=lambda value, unit: f"{value:.2f} {unit}/h",
    ),
    MetricSpec(
        "sentiment_shift",
        "Sentiment shift",
        "score",
        compute=_sentiment_shift,
        headline_order=_turn(negative_when="below"),
        evidence="sentiment",
        needs_baseline=True,
    ),
    MetricSpec(
        "coverage_share",
        "Coverage share",
        "share",
        compute=_coverage_share,
        headline_order=_most_covered,
        needs_coverage=True,
    ),
)


def metric_label(metric: str) -> str:
    """The metric's label; a name no spec knows (an old payload's) is shown as it is."""
    spec = METRICS.get(metric)
    return spec.label if spec is not None else metric


def format_value(metric: str | None, value: float | None) -> str:
    """A value as the metric writes it; a name no spec knows is written as a signed score."""
    if value is None:
        return "n/a"
    spec = METRICS.get(metric or "")
    return spec.format(value) if spec is not None else UNIT_FORMATS["score"](value)


def baseline_text(metric: str, value: float, unit: str) -> str:
    """The baseline's value as a message writes it (`0.50 stories/h`, `mean +0.12`)."""
    spec = METRICS.get(metric)
    return spec.baseline_text(value, unit) if spec is not None else _baseline_mean(value, unit)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One rule's metric at one moment, with the evidence behind it."""

    value: float | None  # None: undefined (nothing in the window, or in the baseline)
    count: int  # the counted unit in the window: stories (count: stories) or articles
    enough: bool  # min_articles: enough of the counted unit to trust the value
    window_start: datetime
    window_end: datetime
    baseline_count: int | None = None
    baseline_value: float | None = None  # baseline mean (shift) or rate per hour (ratio)
    unit: str = "stories"  # what `count` counts
    articles: int | None = None  # articles in the window (None: not read)
    sources: int | None = None  # distinct publishers in the window (None: not read)
    sources_ok: bool = True  # min_sources: enough publishers to fire
    coverage_total: int | None = None  # coverage_share: stories (articles) on any configured topic


def measure(
    rule: AlertRuleConfig, stats: StatsFn, now: datetime, total: TotalFn | None = None
) -> Measurement:
    """Compute `rule`'s metric at `now`, reading window statistics through `stats(start, end)` (and, for
    coverage_share, the window's stories on any configured topic through `total(start, end)`)."""
    spec = METRICS[rule.metric]
    start = now - rule.window
    window = stats(start, now)
    baseline: WindowStats | None = None
    if spec.needs_baseline:
        assert rule.baseline is not None  # the config fills it in for these metrics
        baseline = stats(start - rule.baseline, start) if rule.baseline > timedelta(0) else EMPTY
    coverage: int | None = None
    if spec.needs_coverage:
        assert total is not None, f"{rule.metric} needs the window's total over the configured topics"
        coverage = total(start, now)
    value, baseline_value = spec.compute(MetricInput(rule, window, baseline, coverage))
    if spec.evidence == "count":
        enough = True
    else:
        enough = window.count >= rule.min_articles
        if spec.evidence == "sentiment" and baseline is not None:
            enough = enough and baseline.count >= rule.min_articles
    return Measurement(
        value=value,
        count=window.count,
        enough=enough and value is not None,
        window_start=start,
        window_end=now,
        baseline_count=baseline.count if baseline is not None else None,
        baseline_value=baseline_value,
        unit=rule.count,
        articles=window.articles,
        sources=window.sources,
        sources_ok=rule.min_sources <= 0 or (window.sources or 0) >= rule.min_sources,
        coverage_total=coverage,
    )


def breaches(rule: AlertRuleConfig, m: Measurement) -> bool:
    """At or beyond the threshold, with enough evidence: the counted unit and the distinct publishers."""
    if not m.enough or not m.sources_ok or m.value is None:
        return False
    return m.value >= rule.above if rule.above is not None else m.value <= rule.below  # type: ignore[operator]


def clear_level(rule: AlertRuleConfig) -> float:
    return rule.clear if rule.clear is not None else rule.threshold


def clears(rule: AlertRuleConfig, m: Measurement) -> bool:
    """Strictly past the clear level (the threshold when no `clear` is set), so never both at once.

    An undefined value (empty window or baseline) clears: the news went quiet. Sentiment metrics
    computed on fewer than `min_articles` stories (articles) neither fire nor clear (the alert holds).
    `min_sources` is not consulted: it only keeps thin coverage from firing.
    """
    if m.value is None:
        return True
    if METRICS[rule.metric].evidence == "sentiment" and not m.enough:
        return False
    level = clear_level(rule)
    return m.value < level if rule.above is not None else m.value > level


def headline_order(rule: AlertRuleConfig, resolved: bool = False) -> HeadlineOrder:
    """Which stories explain the alert: most negative for a negative turn, most positive for a positive,
    the most recent for volume, the most widely carried for coverage share (each spec says which)."""
    return METRICS[rule.metric].headline_order(rule.direction, resolved)
