"""`monitor rules test`: replay stored history through the rules, writing and sending nothing.

Each rule starts `inactive` at `since` (its window and baseline already filled from the articles before
`since`). The rule is evaluated at every moment its metric can change — when an article enters or leaves the
window or the baseline (for `coverage_share`, any article of a configured topic) — and at the moment a `for`
period or a `repeat` interval elapses, so the replay gives the times live evaluation would have reached at its
next tick. Articles count from `happened_at` (publication time, or collection time when the entry carried no
date), exactly as in live evaluation.

The in-memory windows compute what the SQL windows compute (`monitor.store.windows`): with
`count: stories` one vote per story (the mean of its articles in the window, the majority label), with
`count: articles` one per article; distinct publishers; and coverage_share's denominator. Story windows
slide forward incrementally, so a replay over months stays linear in the articles.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.alerts.lifecycle import Snapshot, next_deadline, step
from monitor.alerts.metrics import METRICS, StatsFn, TotalFn, measure
from monitor.config import AlertRuleConfig, Settings
from monitor.store.windows import (
    NEGATIVE,
    POSITIVE,
    SeriesRow,
    StoryTally,
    WindowStats,
    coverage_series,
    topic_series,
)


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
    stories: int | None = None  # with count: stories
    sources: int | None = None

    def as_row(self) -> dict:
        return {
            "rule": self.rule,
            "topic": self.topic,
            "event": self.kind,
            "at": self.at,
            "value": self.value,
            "threshold": self.threshold,
            "stories": self.stories,
            "articles": self.articles,
            "sources": self.sources,
            "reason": self.reason,
        }


def as_rows(rows: Sequence[tuple]) -> list[SeriesRow]:
    """Series rows; a bare (happened_at, sentiment, label) counts as a story of its own, from no publisher."""
    out = []
    for index, row in enumerate(rows):
        story = row[3] if len(row) > 3 and row[3] is not None else ("row", index)
        out.append(SeriesRow(row[0], float(row[1]), row[2], story, row[4] if len(row) > 4 else None))
    return out


class _Sliding:
    """A window `start < t <= end` over time-sorted items, kept up to date as it moves forward.

    Moving it adds the items that entered and removes those that left (`_add` / `_remove`); a move backwards
    (which replay never makes, but a caller may) starts over from empty."""

    def __init__(self, times: Sequence[datetime]) -> None:
        self.times = times
        self.lo = self.hi = 0

    def move(self, start: datetime, end: datetime) -> None:
        lo = bisect.bisect_right(self.times, start)
        hi = max(lo, bisect.bisect_right(self.times, end))
        if lo < self.lo or hi < self.hi:
            self._clear()
            self.lo = self.hi = lo
        while self.hi < hi:
            self._add(self.hi)
            self.hi += 1
        while self.lo < lo:
            self._remove(self.lo)
            self.lo += 1

    def _add(self, index: int) -> None:
        raise NotImplementedError

    def _remove(self, index: int) -> None:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError


class DistinctWindow(_Sliding):
    """How many distinct keys (publishers, stories) the items in the window carry."""

    def __init__(self, times: Sequence[datetime], keys: Sequence[Hashable | None]) -> None:
        super().__init__(times)
        self.keys = keys
        self.counts: Counter[Hashable] = Counter()

    def __call__(self, start: datetime, end: datetime) -> int:
        self.move(start, end)
        return len(self.counts)

    def _add(self, index: int) -> None:
        key = self.keys[index]
        if key:
            self.counts[key] += 1

    def _remove(self, index: int) -> None:
        key = self.keys[index]
        if key:
            self.counts[key] -= 1
            if self.counts[key] <= 0:
                del self.counts[key]

    def _clear(self) -> None:
        self.counts.clear()


class StoryWindow(_Sliding):
    """One vote per story over a sliding window: per-story tallies and running totals of their votes."""

    def __init__(self, rows: Sequence[SeriesRow]) -> None:
        super().__init__([row.happened_at for row in rows])
        self.rows = rows
        self.sources = DistinctWindow(self.times, [row.source for row in rows])
        self._clear()

    def stats(self, start: datetime, end: datetime) -> WindowStats:
        self.move(start, end)
        sources = self.sources(start, end)
        return WindowStats(self.count, self.total, self.negative, self.positive, self.articles, sources)

    def _clear(self) -> None:
        self.tallies: dict[Hashable, StoryTally] = {}
        self.count = self.articles = self.negative = self.positive = 0
        self.total = 0.0

    def _add(self, index: int) -> None:
        row = self.rows[index]
        tally = self.tallies.get(row.story)
        if tally is None:
            tally = self.tallies[row.story] = StoryTally()
        else:
            self._vote(tally, -1)
        tally.articles += 1
        tally.sentiment_sum += row.sentiment
        tally.labels[row.label] += 1
        self._vote(tally, +1)

    def _remove(self, index: int) -> None:
        row = self.rows[index]
        tally = self.tallies[row.story]
        self._vote(tally, -1)
        tally.articles -= 1
        tally.sentiment_sum -= row.sentiment
        tally.labels[row.label] -= 1
        if tally.articles:
            self._vote(tally, +1)
        else:
            del self.tallies[row.story]

    def _vote(self, tally: StoryTally, sign: int) -> None:
        """Add (+1) or take back (-1) one story's vote from the totals."""
        self.count += sign
        self.articles += sign * tally.articles
        self.total += sign * tally.mean
        label = tally.label
        self.negative += sign * (label == NEGATIVE)
        self.positive += sign * (label == POSITIVE)


class StorySeriesStats:
    """`count: stories` windows over an in-memory series: one sliding window per window length (the rule's
    window and its baseline each move forward with `now`)."""

    def __init__(self, rows: Sequence[tuple]) -> None:
        self.rows = as_rows(rows)
        self.times = [row.happened_at for row in self.rows]
        self._windows: dict[timedelta, StoryWindow] = {}

    def __call__(self, start: datetime, end: datetime) -> WindowStats:
        window = self._windows.get(end - start)
        if window is None:
            window = self._windows[end - start] = StoryWindow(self.rows)
        return window.stats(start, end)


class SeriesStats:
    """`count: articles` windows over an in-memory series with prefix sums: O(log n) per window (plus the
    distinct publishers when the rows name them)."""

    def __init__(self, rows: Sequence[tuple]) -> None:
        self.times = [row[0] for row in rows]
        self._sum = [0.0]
        self._neg = [0]
        self._pos = [0]
        for row in rows:
            self._sum.append(self._sum[-1] + row[1])
            self._neg.append(self._neg[-1] + (row[2] == NEGATIVE))
            self._pos.append(self._pos[-1] + (row[2] == POSITIVE))
        self._publishers = [row[4] if len(row) > 4 else None for row in rows]
        self._sources: dict[timedelta, DistinctWindow] = {}

    def __call__(self, start: datetime, end: datetime) -> WindowStats:
        lo = bisect.bisect_right(self.times, start)  # start < happened_at
        hi = bisect.bisect_right(self.times, end)  # happened_at <= end
        sources = self._distinct_sources(start, end)
        if hi <= lo:
            return WindowStats(0, 0.0, 0, 0, 0, sources)
        return WindowStats(
            hi - lo,
            self._sum[hi] - self._sum[lo],
            self._neg[hi] - self._neg[lo],
            self._pos[hi] - self._pos[lo],
            hi - lo,
            sources,
        )

    def _distinct_sources(self, start: datetime, end: datetime) -> int | None:
        if not any(self._publishers):
            return None
        window = self._sources.get(end - start)
        if window is None:
            window = self._sources[end - start] = DistinctWindow(self.times, self._publishers)
        return window(start, end)


def series_stats(rule: AlertRuleConfig, rows: Sequence[tuple]) -> StatsFn:
    """The in-memory window reader for `rule`'s counted unit."""
    return StorySeriesStats(rows) if rule.count == "stories" else SeriesStats(rows)


def replay_rule(
    rule: AlertRuleConfig,
    rows: Sequence[tuple],
    since: datetime,
    until: datetime,
    coverage: Sequence[tuple[datetime, int]] | None = None,
) -> list[ReplayEvent]:
    """The transitions `rule` would have made between `since` and `until` over the series `rows`.

    `coverage`: (happened_at, story or article key) of every configured topic's article, for
    coverage_share (see `monitor.store.windows.coverage_series`)."""
    stats = series_stats(rule, rows)
    total: TotalFn | None = None
    times = [row[0] for row in rows]
    if coverage is not None:
        total = DistinctWindow([c[0] for c in coverage], [c[1] for c in coverage])
        times = sorted(times + [c[0] for c in coverage])
    points = _evaluation_points(rule, times, since, until)
    state = Snapshot()
    out: list[ReplayEvent] = []
    index = 0
    now = points[0]
    while True:
        m = measure(rule, stats, now, total)
        decision = step(rule, state, m, now)
        if decision.event is not None:
            stories = m.count if m.unit == "stories" else None
            articles = m.articles if m.articles is not None else m.count
            out.append(
                ReplayEvent(
                    rule.name,
                    rule.topic,
                    decision.event,
                    now,
                    m.value,
                    rule.threshold,
                    articles,
                    decision.reason,
                    stories,
                    m.sources,
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


def _evaluation_points(
    rule: AlertRuleConfig, times: Sequence[datetime], since: datetime, until: datetime
) -> list[datetime]:
    """Every moment an article enters or leaves the window (or the baseline), plus `since` and `until`."""
    offsets = [rule.window * 0, rule.window]
    if rule.baseline is not None and METRICS[rule.metric].needs_baseline:
        offsets.append(rule.window + rule.baseline)
    return sorted({t + off for t in times for off in offsets if since < t + off <= until} | {since, until})


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
            coverage = None
            if METRICS[rule.metric].needs_coverage:
                coverage = coverage_series(
                    session, list(settings.topics), since - lookback, until, rule.count
                )
            events.extend(replay_rule(rule, rows, since, until, coverage))
    events.sort(key=lambda e: (e.at, e.rule))
    return events
