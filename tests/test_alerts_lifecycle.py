"""The alert state machine and the metrics, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.lifecycle import Snapshot, next_deadline, step
from monitor.alerts.metrics import Measurement, headline_order, measure
from monitor.alerts.replay import SeriesStats, replay_rule
from monitor.config import AlertRuleConfig

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def rule(**overrides: object) -> AlertRuleConfig:
    data: dict[str, object] = {
        "name": "nvidia-drop",
        "topic": "nvidia",
        "metric": "mean_sentiment",
        "window": "6h",
        "below": -0.3,
        "clear": -0.1,
        "min_articles": 5,
        "for": "0s",
    }
    data.update(overrides)
    return AlertRuleConfig.model_validate(data)


def m(value: float | None, count: int = 10, enough: bool | None = None) -> Measurement:
    if enough is None:
        enough = count >= 5 and value is not None
    return Measurement(value=value, count=count, enough=enough, window_start=T0, window_end=T0)


def run(r: AlertRuleConfig, values: list[tuple[int, Measurement]]) -> list[tuple[int, str]]:
    """Feed (minute, measurement) pairs through the state machine; return (minute, event) pairs."""
    state = Snapshot()
    events = []
    for minute, measurement in values:
        decision = step(r, state, measurement, T0 + minute * MIN)
        if decision.event:
            events.append((minute, decision.event))
        state = decision.after
    return events


def test_hysteresis_fires_once_and_does_not_flap_around_the_threshold() -> None:
    wobble = [-0.31, -0.29, -0.32, -0.28, -0.35, -0.2, -0.3, -0.12, -0.31, -0.11]
    events = run(rule(), [(i, m(v)) for i, v in enumerate(wobble)])
    assert events == [(0, "fired")]
    # Only strictly past `clear` resolves; -0.1 itself is not past it.
    events = run(rule(), [(0, m(-0.5)), (1, m(-0.1)), (2, m(-0.05)), (3, m(-0.15)), (4, m(-0.29))])
    assert events == [(0, "fired"), (2, "resolved")]


def test_without_clear_the_threshold_itself_is_the_clear_level() -> None:
    r = rule(clear=None)
    events = run(r, [(0, m(-0.3)), (1, m(-0.3)), (2, m(-0.2999)), (3, m(-0.3))])
    assert events == [(0, "fired"), (2, "resolved"), (3, "fired")]


def test_above_rules_mirror_below_rules() -> None:
    r = rule(metric="negative_share", below=None, above=0.5, clear=0.35)
    values = [0.49, 0.5, 0.4, 0.36, 0.35, 0.34, 0.6]
    assert run(r, [(i, m(v)) for i, v in enumerate(values)]) == [(1, "fired"), (5, "resolved"), (6, "fired")]


def test_pending_period_must_hold_before_firing() -> None:
    r = rule(**{"for": "15m"})
    events = run(r, [(0, m(-0.5)), (5, m(-0.5)), (14, m(-0.5)), (15, m(-0.5)), (20, m(-0.5))])
    assert events == [(0, "pending"), (15, "fired")]


def test_pending_is_cancelled_when_the_breach_goes_away_and_restarts_from_zero() -> None:
    r = rule(**{"for": "15m"})
    values = [(0, m(-0.5)), (10, m(-0.25)), (12, m(-0.5)), (20, m(-0.5)), (27, m(-0.5))]
    assert run(r, values) == [(0, "pending"), (10, "cancelled"), (12, "pending"), (27, "fired")]


def test_reminders_every_repeat_while_firing_then_resolved() -> None:
    r = rule(repeat="1h")
    values = [(minute, m(-0.5)) for minute in range(0, 200, 10)] + [(200, m(0.2)), (270, m(0.2))]
    assert run(r, values) == [
        (0, "fired"),
        (60, "reminder"),
        (120, "reminder"),
        (180, "reminder"),
        (200, "resolved"),
    ]


def test_no_repeat_means_no_reminders() -> None:
    values = [(minute, m(-0.5)) for minute in range(0, 600, 30)]
    assert run(rule(repeat=None), values) == [(0, "fired")]


def test_min_articles_insufficient_evidence_does_not_fire() -> None:
    assert run(rule(), [(0, m(-0.9, count=4)), (1, m(-0.9, count=3))]) == []
    assert run(rule(), [(0, m(-0.9, count=4)), (1, m(-0.9, count=5))]) == [(1, "fired")]


def test_firing_holds_with_too_few_articles_and_resolves_when_the_window_empties() -> None:
    values = [
        (0, m(-0.6)),  # fires
        (10, m(0.5, count=2)),  # looks cleared, but 2 articles are no evidence either way: hold
        (20, m(-0.6, count=1)),  # hold
        (30, m(None, count=0)),  # window empty: the news went quiet
    ]
    state = Snapshot()
    seen = []
    for minute, measurement in values:
        decision = step(rule(), state, measurement, T0 + minute * MIN)
        seen.append((minute, decision.event, decision.reason))
        state = decision.after
    assert seen == [(0, "fired", None), (10, None, None), (20, None, None), (30, "resolved", "no_articles")]


def test_volume_ratio_clears_on_its_value_even_with_few_articles() -> None:
    r = rule(metric="volume_ratio", below=None, above=3.0, clear=1.5, min_articles=10, baseline="7d")
    values = [(0, m(4.0, count=12, enough=True)), (10, m(1.0, count=3, enough=False))]
    assert run(r, values) == [(0, "fired"), (10, "resolved")]


def test_next_deadline_is_end_of_for_or_next_reminder() -> None:
    r = rule(**{"for": "15m", "repeat": "2h"})
    assert next_deadline(r, Snapshot("pending", pending_since=T0)) == T0 + 15 * MIN
    assert next_deadline(r, Snapshot("firing", fired_at=T0, last_notified_at=T0 + MIN)) == T0 + 121 * MIN
    assert next_deadline(r, Snapshot("inactive")) is None


# ----------------------------------------------------------------------------- metrics


def series(points: list[tuple[int, float]]) -> SeriesStats:
    rows = [
        (T0 + minute * MIN, s, "negative" if s <= -0.2 else "positive" if s >= 0.2 else "neutral")
        for minute, s in points
    ]
    return SeriesStats(rows)


def test_window_is_open_on_the_left_closed_on_the_right() -> None:
    stats = series([(0, -1.0), (60, 1.0)])
    assert stats(T0, T0 + 60 * MIN).count == 1  # the article at T0 is out, the one at +60 in
    assert stats(T0 - MIN, T0).count == 1


def test_mean_and_shares() -> None:
    stats = series([(1, -0.8), (2, -0.4), (3, 0.0), (4, 0.6)])
    now = T0 + 10 * MIN
    assert measure(rule(metric="mean_sentiment", window="1h"), stats, now).value == pytest.approx(-0.15)
    assert measure(
        rule(metric="negative_share", window="1h", below=None, above=0.5, clear=0.4), stats, now
    ).value == pytest.approx(0.5)
    assert measure(
        rule(metric="positive_share", window="1h", below=None, above=0.5, clear=0.4), stats, now
    ).value == pytest.approx(0.25)
    volume = measure(
        rule(metric="volume", window="1h", below=None, above=3, clear=2, min_articles=50), stats, now
    )
    assert volume.value == 4 and volume.enough  # min_articles does not apply to volume


def test_volume_ratio_against_the_preceding_baseline() -> None:
    # Baseline (the 4h before the last hour): 4 articles = 1/h. Window (last hour): 6 articles = 6/h.
    points = [(i * 60 + 30, 0.0) for i in range(4)] + [(240 + i * 10 + 1, 0.0) for i in range(6)]
    stats = series(points)
    r = rule(
        metric="volume_ratio", window="1h", baseline="4h", below=None, above=3, clear=1.5, min_articles=5
    )
    result = measure(r, stats, T0 + 300 * MIN)
    assert result.count == 6 and result.baseline_count == 4
    assert result.value == pytest.approx(6.0)
    # An empty baseline counts as one article: finite ratio.
    empty = measure(r, series([(241 + i, 0.0) for i in range(6)]), T0 + 300 * MIN)
    assert empty.value == pytest.approx(24.0)


def test_sentiment_shift_needs_evidence_in_both_windows() -> None:
    baseline = [(i, 0.4) for i in range(0, 50, 10)]  # 5 articles, mean 0.4
    window = [(120 + i, -0.2) for i in range(5)]  # 5 articles, mean -0.2
    r = rule(metric="sentiment_shift", window="1h", baseline="2h", below=-0.3, clear=-0.1)
    result = measure(r, series(baseline + window), T0 + 150 * MIN)
    assert result.value == pytest.approx(-0.6) and result.enough
    thin = measure(r, series(baseline[:2] + window), T0 + 150 * MIN)
    assert thin.value == pytest.approx(-0.6) and not thin.enough


def test_headline_order_follows_the_direction_of_the_turn() -> None:
    assert headline_order(rule()) == "most_negative"
    assert headline_order(rule(), resolved=True) == "most_positive"
    assert headline_order(rule(below=None, above=0.4, clear=0.2)) == "most_positive"
    assert headline_order(rule(metric="negative_share", below=None, above=0.5, clear=0.3)) == "most_negative"
    assert headline_order(rule(metric="volume_ratio", below=None, above=3, clear=1)) == "recent"


def test_replay_reports_firing_and_resolution_times() -> None:
    # 8 negative articles 10 minutes apart, then silence: fires at the 5th, resolves when the window empties.
    points = [(i * 10, -0.7) for i in range(8)]
    rows = [(T0 + minute * MIN, s, "negative") for minute, s in points]
    r = rule(window="1h", **{"for": "15m"})
    events = replay_rule(r, rows, T0 - timedelta(hours=1), T0 + timedelta(hours=5))
    kinds = [(e.kind, e.at) for e in events]
    assert kinds == [
        ("pending", T0 + 40 * MIN),
        ("fired", T0 + 55 * MIN),  # exactly `for` after pending
        ("resolved", T0 + 130 * MIN),  # the last article (70 min) leaves the 1h window
    ]
