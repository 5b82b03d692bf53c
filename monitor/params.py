"""Query parameters shared by the CLI and the HTTP API, validated once with errors that name them.

The CLI turns a `ParamError` into a usage error (`--since: ...`), the API into a 422 whose `loc`
names the query parameter. Nothing here touches SQL: values are parsed into typed objects and the
store binds them as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from monitor.config import parse_duration
from monitor.timeutil import as_utc, utcnow

# Clock skew tolerated before a start time counts as "in the future".
FUTURE_SLACK = timedelta(minutes=1)
MAX_LIMIT = 1000


class ParamError(ValueError):
    """A bad query parameter; `param` is its name as the caller spelled it (e.g. `since`)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def parse_when(value: str | datetime, *, param: str, now: datetime | None = None) -> datetime:
    """A duration back from now (`7d`, `90m`, `2w`) or an ISO 8601 date/time (UTC unless it says)."""
    if isinstance(value, datetime):
        return as_utc(value)
    now = now or utcnow()
    text = str(value).strip()
    if not text:
        raise ParamError(param, "must not be empty")
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    except OverflowError:
        raise ParamError(param, f"{text!r} reaches too far back") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParamError(
            param,
            f"{text!r} is neither a duration (e.g. 24h, 7d) nor an ISO 8601 date/time "
            "(e.g. 2025-11-24T09:00Z)",
        ) from None
    try:
        return as_utc(parsed)
    except OverflowError:
        raise ParamError(param, f"{text!r} is out of range") from None


def time_range(
    since: str | datetime | None,
    until: str | datetime | None,
    *,
    default_since: str | None = "7d",
    now: datetime | None = None,
    names: tuple[str, str] = ("since", "until"),
) -> tuple[datetime | None, datetime]:
    """[since, until) from user text; `until` defaults to now. A start in the future is an error."""
    now = now or utcnow()
    since = since if since not in (None, "") else default_since
    start = parse_when(since, param=names[0], now=now) if since is not None else None
    end = parse_when(until, param=names[1], now=now) if until not in (None, "") else now
    if start is not None and start > now + FUTURE_SLACK:
        raise ParamError(names[0], f"{_show(since)} is in the future")
    if start is not None and end <= start:
        shown_until = _show(until) if until not in (None, "") else "now"
        raise ParamError(names[1], f"must be after {names[0]} ({shown_until} is not after {_show(since)})")
    return start, end


def _show(value: object) -> str:
    return repr(value.isoformat()) if isinstance(value, datetime) else repr(value)


def check_topics(topics: Iterable[str] | None, known: Sequence[str], *, param: str = "topic") -> list[str]:
    """The requested topics in order (all known ones when none are given); unknown ones are an error."""
    requested = [t.strip() for t in (topics or []) if t and t.strip()]
    if not requested:
        return list(known)
    unknown = [t for t in requested if t not in known]
    if unknown:
        raise ParamError(
            param, f"unknown topic {unknown[0]!r} (known: {', '.join(known) or 'none configured'})"
        )
    return list(dict.fromkeys(requested))


def check_limit(
    limit: int | None, *, default: int = 50, maximum: int = MAX_LIMIT, param: str = "limit"
) -> int:
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise ParamError(param, f"must be between 1 and {maximum}, got {limit}")
    return limit


def check_score_range(
    min_score: float | None, max_score: float | None, *, names: tuple[str, str] = ("min_score", "max_score")
) -> None:
    for name, value in zip(names, (min_score, max_score), strict=True):
        if value is not None and not -1.0 <= value <= 1.0:
            raise ParamError(name, f"must be between -1 and 1, got {value}")
    if min_score is not None and max_score is not None and min_score > max_score:
        raise ParamError(names[1], f"must be >= {names[0]} ({max_score} < {min_score})")


MAX_SEARCH = 200


def check_search(text: str | None, *, param: str = "search") -> str | None:
    """Search text is matched literally (never SQL); only its length and control characters are checked."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if len(text) > MAX_SEARCH:
        raise ParamError(param, f"at most {MAX_SEARCH} characters, got {len(text)}")
    if any(ord(ch) < 32 for ch in text):
        raise ParamError(param, "must not contain control characters")
    return text
