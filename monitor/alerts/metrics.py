"""Rule metrics over a window, computed from window statistics (live SQL or in-memory replay alike).

Metrics, for the articles of the rule's topic in the window `(now - window, now]`:
- `mean_sentiment`: mean topic sentiment in [-1, 1].
- `negative_share` / `positive_share`: share of articles labelled negative / positive.
- `volume`: the number of articles.
- `volume_ratio`: the window's article rate divided by the baseline's rate. The baseline is the `baseline`
  period just before the window; an empty baseline counts as one article so the ratio stays finite.
- `sentiment_shift`: window mean minus baseline mean.

Evidence (`min_articles`): sentiment metrics need at least `min_articles` articles in the window (and, for
`sentiment_shift`, in the baseline too); `volume_ratio` needs them in the window to fire; `volume` is the
count itself, so `min_articles` does not apply to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.config import AlertRuleConfig
from monitor.store.windows import EMPTY, HeadlineOrder, WindowStats

StatsFn = Callable[[datetime, datetime], WindowStats]

SENTIMENT_METRICS = frozenset({"mean_sentiment", "negative_share", "positive_share", "sentiment_shift"})
VOLUME_METRICS = frozenset({"volume", "volume_ratio"})

METRIC_LABELS = {
    "mean_sentiment": "Mean sentiment",
    "negative_share": "Negative share",
    "positive_share": "Positive share",
    "volume": "Volume",
    "volume_ratio": "Volume ratio",
    "sentiment_shift": "Sentiment shift",
}


@dataclass(frozen=True, slots=True)
class Measurement:
    """One rule's metric at one moment, with the evidence behind it."""

    value: float | None  # None: undefined (no articles in the window, or none in the baseline)
    count: int  # articles in the window
    enough: bool  # evidence suffices to fire (min_articles)
    window_start: datetime
    window_end: datetime
    baseline_count: int | None = None
    baseline_value: float | None = None  # baseline mean (shift) or rate per hour (ratio)


def measure(rule: AlertRuleConfig, stats: StatsFn, now: datetime) -> Measurement:
    """Compute `rule`'s metric at `now`, reading window statistics through `stats(start, end)`."""
    start = now - rule.window
    window = stats(start, now)
    baseline: WindowStats | None = None
    if rule.metric in ("volume_ratio", "sentiment_shift"):
        assert rule.baseline is not None  # the config fills it in for these metrics
        baseline = stats(start - rule.baseline, start) if rule.baseline > timedelta(0) else EMPTY
    value: float | None
    baseline_value: float | None = None
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
    )


def breaches(rule: AlertRuleConfig, m: Measurement) -> bool:
    """At or beyond the threshold, with enough evidence."""
    if not m.enough or m.value is None:
        return False
    return m.value >= rule.above if rule.above is not None else m.value <= rule.below  # type: ignore[operator]


def clear_level(rule: AlertRuleConfig) -> float:
    return rule.clear if rule.clear is not None else rule.threshold


def clears(rule: AlertRuleConfig, m: Measurement) -> bool:
    """Strictly past the clear level (the threshold when no `clear` is set), so never both at once.

    An undefined value (empty window or baseline) clears: the news went quiet. Sentiment metrics
    computed on fewer than `min_articles` articles neither fire nor clear (the alert holds).
    """
    if m.value is None:
        return True
    if rule.metric in SENTIMENT_METRICS and not m.enough:
        return False
    level = clear_level(rule)
    return m.value < level if rule.above is not None else m.value > level


def headline_order(rule: AlertRuleConfig, resolved: bool = False) -> HeadlineOrder:
    """Which articles explain the alert: most negative for a negative turn, most positive for a positive."""
    if rule.metric in VOLUME_METRICS:
        return "recent"
    negative_turn = {
        "mean_sentiment": rule.direction == "below",
        "sentiment_shift": rule.direction == "below",
        "negative_share": rule.direction == "above",
        "positive_share": rule.direction == "below",
    }[rule.metric]
    if resolved:
        negative_turn = not negative_turn
    return "most_negative" if negative_turn else "most_positive"
