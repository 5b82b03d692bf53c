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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.config import AlertRuleConfig
from monitor.store.windows import EMPTY, HeadlineOrder, WindowStats

StatsFn = Callable[[datetime, datetime], WindowStats]
# Stories (articles) in a window carrying any configured topic: coverage_share's denominator.
TotalFn = Callable[[datetime, datetime], int]

SENTIMENT_METRICS = frozenset({"mean_sentiment", "negative_share", "positive_share", "sentiment_shift"})
VOLUME_METRICS = frozenset({"volume", "volume_ratio"})
BASELINE_METRICS = frozenset({"volume_ratio", "sentiment_shift"})

METRIC_LABELS = {
    "mean_sentiment": "Mean sentiment",
    "negative_share": "Negative share",
    "positive_share": "Positive share",
    "volume": "Volume",
    "volume_ratio": "Volume ratio",
    "sentiment_shift": "Sentiment shift",
    "coverage_share": "Coverage share",
}


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
    start = now - rule.window
    window = stats(start, now)
    baseline: WindowStats | None = None
    if rule.metric in BASELINE_METRICS:
        assert rule.baseline is not None  # the config fills it in for these metrics
        baseline = stats(start - rule.baseline, start) if rule.baseline > timedelta(0) else EMPTY
    value: float | None
    baseline_value: float | None = None
    coverage: int | None = None
    enough = window.count >= rule.min_articles
    if rule.metric == "mean_sentiment":
        value = window.mean
    elif rule.metric == "negative_share":
        value = window.neg_share
    elif rule.metric == "positive_share":
        value = window.pos_share
    elif rule.metric == "volume":
        value = float(window.count)
        enough = True
    elif rule.metric == "coverage_share":
        assert total is not None, "coverage_share needs the window's total over the configured topics"
        coverage = total(start, now)
        value = window.count / coverage if coverage else None
    elif rule.metric == "volume_ratio":
        assert baseline is not None and rule.baseline is not None
        window_rate = window.count / rule.window.total_seconds()
        baseline_rate = max(baseline.count, 1) / rule.baseline.total_seconds()
        value = window_rate / baseline_rate
        baseline_value = baseline.count / (rule.baseline.total_seconds() / 3600)
    else:  # sentiment_shift
        assert baseline is not None
        baseline_value = baseline.mean
        value = None if window.mean is None or baseline.mean is None else window.mean - baseline.mean
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
    if rule.metric in SENTIMENT_METRICS and not m.enough:
        return False
    level = clear_level(rule)
    return m.value < level if rule.above is not None else m.value > level


def headline_order(rule: AlertRuleConfig, resolved: bool = False) -> HeadlineOrder:
    """Which stories explain the alert: most negative for a negative turn, most positive for a positive,
    the most recent for volume, the most widely carried for coverage share."""
    if rule.metric in VOLUME_METRICS:
        return "recent"
    if rule.metric == "coverage_share":
        return "most_covered"
    negative_turn = {
        "mean_sentiment": rule.direction == "below",
        "sentiment_shift": rule.direction == "below",
        "negative_share": rule.direction == "above",
        "positive_share": rule.direction == "below",
    }[rule.metric]
    if resolved:
        negative_turn = not negative_turn
    return "most_negative" if negative_turn else "most_positive"
