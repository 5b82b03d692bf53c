"""The message of a feed-health alert (monitor/alerts/feedhealth.py): which feed, what is wrong, when it last
worked.

Rendered once, when the transition is recorded, into the payload's `rendered` (Slack text fallback, blocks,
console text), which every transport sends as it is (`monitor.notify.message.render_slack`). The same
escaping and limits as alert messages: feed names, hosts and stored errors are escaped (`&`, `<`, `>`), so an
error body quoting `<!channel>` pings nobody; sections stay under 3,000 characters, the header under 150.

    🟠 WARNING · feed-health · chip-wire
    Feed chip-wire is failing: 6 failed polls in a row (alert at 5)
    Last error: HTTP 500: Internal Server Error (last poll 2026-03-02 12:10 UTC)
    Last worked: 2026-03-02 10:00 UTC · newest article collected 2026-03-02 09:40 UTC
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.notify.message import (
    HEADER_LIMIT,
    SECTION_LIMIT,
    SEVERITY_ICON,
    TEXT_LIMIT,
    escape,
    format_duration,
    plural,
    truncate,
)
from monitor.textsafe import strip_bidi

ERROR_LIMIT = 500
REASONS = {
    "recovered": "the feed works again",
    "rule_removed": "the feed was removed from the configuration or disabled, or its health check was",
}


def render(p: dict[str, Any]) -> dict[str, Any]:
    """`{"text", "blocks", "console"}` for a fired, reminder or resolved feed-health notice."""
    lines = _lines(p)
    section = truncate("\n".join(escape(line) for line in lines), SECTION_LIMIT)
    title = _title(p)
    context = f"rule `{escape(p['rule'])}` · feed `{escape(p['feed'])}`"
    if p.get("fingerprint"):
        context += f" · alert `{escape(p['fingerprint'])}`"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": section}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    prefix = {"resolved": "Resolved", "reminder": "Still broken"}.get(p["kind"], str(p["severity"]).upper())
    text = f"[{prefix}] {p['rule']} ({p['feed']}): " + "; ".join(lines)
    console = "\n".join([title, *(f"  {line}" for line in lines)])
    return {"text": truncate(escape(text), TEXT_LIMIT), "blocks": blocks, "console": strip_bidi(console)}


def _title(p: dict[str, Any]) -> str:
    severity = str(p.get("severity") or "warning")
    where = f"{p['rule']} · {p['feed']}"
    if p["kind"] == "resolved":
        head = f"✅ RESOLVED · {where}"
    elif p["kind"] == "reminder":
        head = f"🔁 STILL BROKEN ({severity.upper()}) · {where}"
    else:
        head = f"{SEVERITY_ICON.get(severity, '⚠️')} {severity.upper()} · {where}"
    return truncate(strip_bidi(head), HEADER_LIMIT)


def _lines(p: dict[str, Any]) -> list[str]:
    """Plain lines (escaped by the caller for Slack): what is wrong, the last error, when it last worked."""
    feed = p["feed"]
    lines: list[str] = []
    if p["kind"] == "resolved":
        reason = REASONS.get(str(p.get("reason")), str(p.get("reason") or ""))
        lines.append(f"Feed {feed} resolved: {reason}")
        if p.get("fired_at"):
            lines.append(f"Broken from {_time(p['fired_at'])} to {_time(p.get('at'))}")
        lines.append(_last_worked(p))
        return lines
    lines.append(_problem(p))
    if p.get("last_error") and p.get("problem") == "failing":
        error = truncate(" ".join(str(p["last_error"]).split()), ERROR_LIMIT)
        lines.append(f"Last error: {error} (last poll {_time(p.get('last_polled_at'))})")
    lines.append(_last_worked(p))
    if p["kind"] == "reminder" and p.get("fired_at"):
        lines.append(f"Broken since {_time(p['fired_at'])}")
    ended = p.get("silence_ended")
    if isinstance(ended, dict):
        lines.append(
            f"Silence #{ended.get('id')} ended {_time(ended.get('ended_at'))}: this alert's "
            f"{ended.get('held_back', 'notice')} of {_time(ended.get('held_back_at'))} was held back by it"
        )
    if p.get("host"):
        lines.append(f"Host: {p['host']}")
    return lines


def _problem(p: dict[str, Any]) -> str:
    feed = p["feed"]
    if p.get("problem") == "failing":
        polls = plural(int(p.get("consecutive_errors") or 0), "failed poll")
        return f"Feed {feed} is failing: {polls} in a row (alert at {int(p.get('failures') or 0)})"
    if p.get("problem") == "silent":
        limit = format_duration(float(p.get("silent_for_seconds") or 0))
        if not p.get("last_new_at"):
            return (
                f"Feed {feed} has brought no article since it was first seen {_time(p.get('silent_since'))} "
                f"({_ago(p.get('silent_since'), p.get('at'))}; alert after {limit})"
            )
        return (
            f"Feed {feed} has brought nothing new since {_time(p.get('silent_since'))} "
            f"({_ago(p.get('silent_since'), p.get('at'))}; alert after {limit})"
        )
    return f"Feed {feed}: no problem now"


def _last_worked(p: dict[str, Any]) -> str:
    """When the feed last answered a poll, and when it last brought a new article."""
    success = p.get("last_success_at")
    worked = "Last worked: never"
    if success:
        worked = f"Last worked: {_time(success)} ({_ago(success, p.get('at'))})"
    if p.get("last_status") and p.get("problem") != "failing":
        status = str(p["last_status"]).replace("_", " ")
        if p.get("last_http_status"):
            status += f", HTTP {p['last_http_status']}"
        worked += f", last poll {status}"
    newest = p.get("last_new_at")
    worked += f" · newest article collected {_time(newest)}" if newest else " · no article collected yet"
    return worked


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _time(value: Any) -> str:
    when = _parse(value)
    return when.strftime("%Y-%m-%d %H:%M UTC") if when is not None else "?"


def _ago(value: Any, at: Any) -> str:
    """`2h ago`, `9d ago` (coarse on purpose: a message is read minutes later)."""
    start, end = _parse(value), _parse(at)
    if start is None or end is None:
        return "?"
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds >= 86400:
        return f"{seconds / 86400:.0f}d ago" if seconds >= 3 * 86400 else f"{seconds / 3600:.0f}h ago"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 60:.0f}m ago"
