"""`monitor rules test`: replay stored history through the rules, writing and sending nothing.

Each rule starts `inactive` at `since` (its window and baseline already filled from the articles before
`since`). The rule is evaluated at every moment its metric can change — when an article enters or leaves the
window or the baseline — and at the moment a `for` period or a `repeat` interval elapses, so the replay
gives the times live evaluation would have reached at its next tick. Articles count from `happened_at`
(publication time, or collection time when the entry carried no date), exactly as in live evaluation.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.alerts.lifecycle import Snapshot, next_deadline, step
from monitor.alerts.metrics import measure
from monitor.config import AlertRuleConfig, Settings
from monitor.store.windows import NEGATIVE, POSITIVE, WindowStats, topic_series


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    rule: str
    topic: str
    kind: str  # pending | fired | reminder | resolved | cancelled
    at: datetime
    value: float | None
    threshold: float
    articles: int
    reason: str | None = None

    def as_row(self) -> dict:
        return {
            "rule": self.rule,
            "topic": self.topic,
            "event": self.kind,
            "at": self.at,
            "value": self.value,
            "threshold": self.threshold,
            "articles": self.articles,
            "reason": self.reason,
        }


class SeriesStats:
    """Window statistics over an in-memory series with prefix sums: O(log n) per window."""

    def __init__(self, rows: list[tuple[datetime, float, str]]) -> None:
        self.times = [row[0] for row in rows]
        self._sum = [0.0]
        self._neg = [0]
        self._pos = [0]
        for _, sentiment, label in rows:
            self._sum.append(self._sum[-1] + sentiment)
            self._neg.append(self._neg[-1] + (label == NEGATIVE))
            self._pos.append(self._pos[-1] + (label == POSITIVE))

    def __call__(self, start: datetime, end: datetime) -> WindowStats:
        lo = bisect.bisect_right(self.times, start)  # start < happened_at
        hi = bisect.bisect_right(self.times, end)  # happened_at <= end
        if hi <= lo:
            return WindowStats(0, 0.0, 0, 0)
        return WindowStats(
            hi - lo,
            self._sum[hi] - self._sum[lo],
            self._neg[hi] - self._neg[lo],
            self._pos[hi] - self._pos[lo],
        )


def replay_rule(
    rule: AlertRuleConfig, rows: list[tuple[datetime, float, str]], since: datetime, until: datetime
) -> list[ReplayEvent]:
    """The transitions `rule` would have made between `since` and `until` over the series `rows`."""
    stats = SeriesStats(rows)
    offsets = [rule.window * 0]
    offsets.append(rule.window)
    if rule.baseline is not None and rule.metric in ("volume_ratio", "sentiment_shift"):
        offsets.append(rule.window + rule.baseline)
    points = sorted(
        {t + off for t in stats.times for off in offsets if since < t + off <= until} | {since, until}
    )
    state = Snapshot()
    out: list[ReplayEvent] = []
    index = 0
    now = points[0]
    while True:
        m = measure(rule, stats, now)
        decision = step(rule, state, m, now)
        if decision.event is not None:
            out.append(
                ReplayEvent(
                    rule.name,
                    rule.topic,
                    decision.event,
                    now,
                    m.value,
                    rule.threshold,
                    m.count,
                    decision.reason,
                )
            )
        state = decision.after
        while index < len(points) and points[index] <= now:
            index += 1
        candidates = [points[index]] if index < len(points) else []
        deadline = next_deadline(rule, state)
        if deadline is not None and now < deadline <= until:
            candidates.append(deadline)
        if not candidates:
            return out
        now = min(candidates)


def replay(
    settings: Settings,
    engine: Engine,
    since: datetime,
    until: datetime,
    rule_names: list[str] | None = None,
) -> list[ReplayEvent]:
    """Replay every (or the named) rule, including disabled ones when named explicitly."""
    rules = [r for r in settings.alerts if (r.name in rule_names if rule_names else r.enabled)]
    events: list[ReplayEvent] = []
    with Session(engine) as session:
        for rule in rules:
            lookback = rule.window + (rule.baseline or rule.window * 0)
            rows = topic_series(session, rule.topic, since - lookback, until)
            events.extend(replay_rule(rule, rows, since, until))
    events.sort(key=lambda e: (e.at, e.rule))
    return events
