"""When a digest is due: a local time of day in an IANA zone, every day or on one weekday, across DST.

The rule (README, Digests):
- The digest of a day is due at `at`, local time, in `timezone`.
- A time that does not exist that day (inside a spring-forward gap: 02:30 in Europe/Berlin on the last
  Sunday of March) is due at the first instant after the gap (03:00 local): the digest still goes out once
  that day, as soon as the clock allows. APScheduler's cron trigger, by contrast, may skip that day.
- A time that occurs twice (fall-back: 02:30 on the last Sunday of October) is due at its first occurrence.
- A period runs from one due instant to the next, so a daily period spans 23 or 25 hours across a change.

Pure functions of the configuration and a clock: no database, so the rule is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.config import WEEKDAYS, DigestConfig
from monitor.timeutil import as_utc

# The widest gap in the time zone database is a whole day (Pacific/Apia skipped 2011-12-30).
_MAX_GAP_MINUTES = 2 * 24 * 60


@dataclass(frozen=True, slots=True)
class Period:
    """What one digest covers, `[start, end)` in UTC, and the period before it, `[previous_start, start)`,
    that its numbers are compared with."""

    start: datetime
    end: datetime
    previous_start: datetime

    @classmethod
    def ending(cls, end: datetime, length: timedelta) -> Period:
        """A period of `length` up to `end` (`monitor digest --since`), against the same length before."""
        end = as_utc(end)
        return cls(start=end - length, end=end, previous_start=end - 2 * length)


def due_at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant `at` happens on `day` in `zone`, by the rule in the module docstring."""
    wall = datetime.combine(day, at)
    for minute in range(_MAX_GAP_MINUTES):
        local = (wall + timedelta(minutes=minute)).replace(tzinfo=zone)  # fold=0: the first occurrence
        instant = local.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):  # it exists
            return instant
    raise ValueError(f"{at} on {day} never happens in {zone.key}")  # pragma: no cover - no such zone


def _sends_on(config: DigestConfig, day: date) -> bool:
    return config.period == "daily" or WEEKDAYS[day.weekday()] == config.weekday


def current_period(config: DigestConfig, now: datetime) -> Period:
    """The latest scheduled period that has ended at `now`: it ends at the latest due instant <= now."""
    zone = ZoneInfo(config.timezone)
    step = timedelta(days=7 if config.period == "weekly" else 1)
    today = as_utc(now).astimezone(zone).date()
    for back in range(-1, 9):  # tomorrow too: a zone may fall back across midnight
        day = today - timedelta(days=back)
        if _sends_on(config, day) and due_at(day, config.at, zone) <= now:
            return Period(
                start=due_at(day - step, config.at, zone),
                end=due_at(day, config.at, zone),
                previous_start=due_at(day - 2 * step, config.at, zone),
            )
    raise AssertionError("a digest is due at least once a week")  # pragma: no cover


def next_due(config: DigestConfig, now: datetime) -> datetime:
    """The first due instant after `now` (for logs and `monitor digest`'s schedule line)."""
    zone = ZoneInfo(config.timezone)
    today = as_utc(now).astimezone(zone).date()
    for ahead in range(-1, 9):
        day = today + timedelta(days=ahead)
        if _sends_on(config, day) and (due := due_at(day, config.at, zone)) > now:
            return due
    raise AssertionError("a digest is due at least once a week")  # pragma: no cover


def period_length(config: DigestConfig) -> timedelta:
    """The nominal length of a period: `monitor digest`'s default `--since`."""
    return timedelta(days=7 if config.period == "weekly" else 1)
