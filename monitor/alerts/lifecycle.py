"""The alert state machine, as a pure function shared by live evaluation and history replay.

    inactive/resolved --breach--> pending --breach held for `for`--> firing --clears--> resolved
                         (for = 0: straight to firing)      |                 |
                                     pending --no breach--> inactive (cancelled, nobody is told)
                                                         firing --every `repeat`--> reminder

- Breach: the metric is at or beyond the threshold with at least `min_articles` articles.
- Clear: strictly past `clear` (hysteresis; the threshold when unset). Between the two the state holds,
  so a metric wandering around the threshold fires once and does not flap.
- While firing with too few articles for a sentiment metric, the alert holds (the value is not trusted
  either way) and reminders continue; once the window is empty (the news went quiet) it resolves.
- Notified transitions: fired, reminder, resolved. Pending and cancelled are recorded, not sent.

`step` reads a rule's measurement; `advance` is the same machine on plain conditions (breach, clear), which
built-in rules that measure no window use too (feed health: monitor/alerts/feedhealth.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from monitor.alerts.metrics import Measurement, breaches, clears
from monitor.config import AlertRuleConfig

State = Literal["inactive", "pending", "firing", "resolved"]
EventKind = Literal["pending", "fired", "reminder", "resolved", "cancelled"]
NOTIFIED_KINDS = frozenset({"fired", "reminder", "resolved"})

REASON_CLEARED = "cleared"
REASON_QUIET = "no_articles"
REASON_RULE_GONE = "rule_removed"


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: State = "inactive"
    pending_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    after: Snapshot
    event: EventKind | None = None
    reason: str | None = None

    @property
    def notify(self) -> bool:
        return self.event in NOTIFIED_KINDS


def step(rule: AlertRuleConfig, before: Snapshot, m: Measurement, now: datetime) -> Decision:
    """The next state for `rule` given its measurement at `now`."""
    return advance(
        before,
        now,
        breach=breaches(rule, m),
        clear=clears(rule, m),
        wait=rule.for_,
        repeat=rule.repeat,
        clear_reason=REASON_QUIET if m.value is None else REASON_CLEARED,
    )


def advance(
    before: Snapshot,
    now: datetime,
    *,
    breach: bool,
    clear: bool,
    wait: timedelta = timedelta(0),
    repeat: timedelta | None = None,
    clear_reason: str = REASON_CLEARED,
) -> Decision:
    """The next state given whether the condition is breached and whether a firing alert clears.

    `wait` is the pending period (`for`), `repeat` the reminder interval; `clear_reason` names a resolve.
    """
    if before.state in ("inactive", "resolved"):
        if not breach:
            return Decision(before)
        if wait.total_seconds() <= 0:
            return _fire(before, now, pending_since=now)
        return Decision(replace(before, state="pending", pending_since=now), "pending")

    if before.state == "pending":
        if not breach:
            return Decision(replace(before, state="inactive", pending_since=None), "cancelled")
        assert before.pending_since is not None
        if now - before.pending_since >= wait:
            return _fire(before, now, pending_since=before.pending_since)
        return Decision(before)

    # firing
    if clear:
        after = replace(before, state="resolved", resolved_at=now, pending_since=None, last_notified_at=now)
        return Decision(after, "resolved", clear_reason)
    last = before.last_notified_at or before.fired_at
    if repeat is not None and repeat.total_seconds() > 0 and last is not None and now - last >= repeat:
        return Decision(replace(before, last_notified_at=now), "reminder")
    return Decision(before)


def retire(before: Snapshot, now: datetime) -> Decision:
    """The rule was removed or disabled: a pending alert is cancelled, a firing one resolved (and said so)."""
    if before.state == "pending":
        return Decision(replace(before, state="inactive", pending_since=None), "cancelled", REASON_RULE_GONE)
    if before.state == "firing":
        after = replace(before, state="resolved", resolved_at=now, pending_since=None, last_notified_at=now)
        return Decision(after, "resolved", REASON_RULE_GONE)
    return Decision(before)


def _fire(before: Snapshot, now: datetime, pending_since: datetime) -> Decision:
    after = Snapshot(
        state="firing", pending_since=pending_since, fired_at=now, resolved_at=None, last_notified_at=now
    )
    return Decision(after, "fired")


def next_deadline(rule: AlertRuleConfig, s: Snapshot) -> datetime | None:
    """When the state could change with no new data: the end of `for`, or the next reminder."""
    if s.state == "pending" and s.pending_since is not None:
        return s.pending_since + rule.for_
    if s.state == "firing" and rule.repeat is not None and rule.repeat.total_seconds() > 0:
        last = s.last_notified_at or s.fired_at
        return last + rule.repeat if last is not None else None
    return None
