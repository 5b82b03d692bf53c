"""Render a notification's stored facts as a Slack message (Block Kit + plain text) or a console line.

Safety and limits:
- Every piece of text that comes from articles or config is escaped (`&`, `<`, `>`), so a headline
  containing `<!channel>` or `<@U123>` shows literally and pings nobody; its bidi controls are dropped
  (monitor/textsafe.py), so it cannot reorder the score or the words shown after it. Link targets must be
  http(s) URLs; the characters that would end a Slack link (`<`, `>`, `|`, spaces) are percent-encoded.
- Block Kit limits: section text <= 3000 characters, header <= 150, at most 50 blocks. Titles are cut by
  characters (never bytes), so Chinese text stays intact.
- The plain `text` fallback is always set (notifications, screen readers, clients without blocks).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from monitor.textsafe import strip_bidi

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
MAX_BLOCKS = 50
TITLE_LIMIT = 300
TEXT_LIMIT = 3000
MAX_HEADLINES = 5

SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
METRIC_LABELS = {
    "mean_sentiment": "Mean sentiment",
    "negative_share": "Negative share",
    "positive_share": "Positive share",
    "volume": "Volume",
    "volume_ratio": "Volume ratio",
    "sentiment_shift": "Sentiment shift",
}
ORDER_LABELS = {
    "most_negative": "most negative first",
    "most_positive": "most positive first",
    "recent": "most recent first",
}
REASON_TEXT = {
    "cleared": "the metric is back past its clear level",
    "no_articles": "no articles left in the window (the news went quiet)",
    "rule_removed": "the rule was removed or disabled",
}


def escape(text: Any) -> str:
    """Slack's three control characters, and bidi controls dropped; emoji, CJK and markdown pass through."""
    return strip_bidi(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_link(url: str | None) -> str | None:
    """An http(s) URL usable inside `<url|label>`, or None."""
    if not url:
        return None
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    if scheme not in ("http", "https") or len(url) > 2000:
        return None
    url = quote(url, safe="/:?#[]@!$&'()*+,;=%~-._")  # encodes space, <, >, |, ", non-ASCII
    return url.replace("&", "&amp;") if len(url) <= 1800 else None


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in ("negative_share", "positive_share"):
        return f"{value:.0%}"
    if metric == "volume":
        return f"{value:.0f}"
    if metric == "volume_ratio":
        return f"{value:.1f}×"
    return f"{value:+.2f}"


def format_duration(seconds: float) -> str:
    delta = timedelta(seconds=seconds)
    if delta % timedelta(days=1) == timedelta(0):
        return f"{delta.days}d"
    if delta % timedelta(hours=1) == timedelta(0):
        return f"{int(delta.total_seconds() // 3600)}h"
    if delta % timedelta(minutes=1) == timedelta(0):
        return f"{int(delta.total_seconds() // 60)}m"
    return f"{int(delta.total_seconds())}s"


def _time(value: str | None) -> str:
    if not value:
        return "?"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")


def _comparison(p: dict[str, Any]) -> str:
    metric = p["metric"]
    op = "≥" if p["direction"] == "above" else "≤"
    clear_op = "below" if p["direction"] == "above" else "above"
    text = f"threshold {op} {format_value(metric, p['threshold'])}"
    if p.get("clear") is not None:
        text += f", clears {clear_op} {format_value(metric, p['clear'])}"
    return text


def _title(p: dict[str, Any]) -> str:
    rule, topic = p["rule"], p["topic"]
    severity = str(p.get("severity", "warning"))
    if p["kind"] == "resolved":
        head = f"✅ RESOLVED · {rule} · {topic}"
    elif p["kind"] == "reminder":
        head = f"🔁 STILL FIRING ({severity.upper()}) · {rule} · {topic}"
    else:
        head = f"{SEVERITY_ICON.get(severity, '⚠️')} {severity.upper()} · {rule} · {topic}"
    if p.get("history"):
        head = "🕘 HISTORY · " + head
    return truncate(strip_bidi(head), HEADER_LIMIT)  # plain_text: no escaping, but no reordering either


HISTORY_SINCE = {"fired": "fired again", "reminder": "stayed firing", "resolved": "resolved"}


def history_note(p: dict[str, Any]) -> str | None:
    """The line that marks a notification redelivered after later transitions of its alert (`monitor
    alerts redeliver --history`): without it, a late `fired` would read as a new alert."""
    history = p.get("history")
    if not history:
        return None
    since = HISTORY_SINCE.get(str(history.get("superseded_by")), "changed")
    return (
        f"History, sent late: this {p['kind']} notice of {_time(p.get('at'))} was not delivered at the time; "
        f"the alert has since {since} ({_time(history.get('superseded_at'))})."
    )


def _summary(p: dict[str, Any]) -> str:
    metric = p["metric"]
    label = METRIC_LABELS.get(metric, metric)
    window = format_duration(p["window_seconds"])
    lines = [
        f"*{escape(label)}* is *{escape(format_value(metric, p.get('value')))}* ({escape(_comparison(p))})",
        f"Window: last {window} ({_time(p.get('window_start'))} – {_time(p.get('window_end'))}) · "
        f"*{int(p.get('count', 0))}* articles (min {int(p.get('min_articles', 0))})",
    ]
    if p.get("baseline_seconds"):
        base = format_duration(p["baseline_seconds"])
        if metric == "volume_ratio" and p.get("baseline_value") is not None:
            lines.append(
                f"Baseline: the {base} before · {p['baseline_value']:.2f} articles/h "
                f"({int(p.get('baseline_count') or 0)} articles)"
            )
        elif p.get("baseline_value") is not None:
            lines.append(
                f"Baseline: the {base} before · mean {p['baseline_value']:+.2f} "
                f"({int(p.get('baseline_count') or 0)} articles)"
            )
    if p["kind"] == "resolved":
        reason = REASON_TEXT.get(str(p.get("reason")), str(p.get("reason") or ""))
        lines.append(f"Resolved: {escape(reason)}")
        if p.get("fired_at"):
            lines.append(f"Fired {_time(p['fired_at'])}, resolved {_time(p.get('at'))}")
    elif p["kind"] == "reminder" and p.get("fired_at"):
        lines.append(f"Firing since {_time(p['fired_at'])}")
    return truncate("\n".join(lines), SECTION_LIMIT)


def _headline_line(h: dict[str, Any]) -> str:
    """`• <url|title> — _source_ · score -0.87` (the URL's own `|` is encoded, so the first `|` splits)."""
    title = escape(truncate(" ".join(str(h.get("title") or "(untitled)").split()), TITLE_LIMIT))
    link = safe_link(h.get("url"))
    line = f"• <{link}|{title}>" if link else f"• {title}"
    if h.get("source"):
        line += f" — _{escape(truncate(str(h['source']), 100))}_"
    line += f" · score {float(h.get('score', 0.0)):+.2f}"
    return truncate(line, SECTION_LIMIT)


def render_slack(p: dict[str, Any], public_url: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(text fallback, blocks) for a fired, reminder or resolved notification."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _title(p), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _summary(p)}},
    ]
    note = history_note(p)
    if note:
        blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(note)}*"}})
    headlines = list(p.get("headlines") or [])[:MAX_HEADLINES]
    if headlines:
        order = ORDER_LABELS.get(str(p.get("headline_order")), "")
        intro = "*Top headlines*" + (f" ({order})" if order else "")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": intro}})
        for h in headlines:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _headline_line(h)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _context(p, public_url)}]})
    return render_text(p), blocks[:MAX_BLOCKS]


def _context(p: dict[str, Any], public_url: str | None) -> str:
    parts = [
        f"rule `{escape(p['rule'])}`",
        f"topic `{escape(p['topic'])}`",
        f"alert `{escape(p['fingerprint'])}`",
    ]
    link = dashboard_link(public_url, p["topic"])
    if link:
        parts.append(f"<{link}|Open the dashboard>")
    return truncate(" · ".join(parts), SECTION_LIMIT)


def dashboard_link(public_url: str | None, topic: str) -> str | None:
    if not public_url:
        return None
    base = safe_link(public_url.rstrip("/") + "/")
    return f"{base}?topic={quote(topic, safe='')}" if base else None


def render_text(p: dict[str, Any]) -> str:
    """The plain `text` fallback (Slack parses it as mrkdwn too, so it is escaped the same way)."""
    metric = p["metric"]
    label = METRIC_LABELS.get(metric, metric).lower()
    prefix = {"resolved": "Resolved", "reminder": "Still firing"}.get(
        p["kind"], str(p.get("severity", "")).upper()
    )
    value = format_value(metric, p.get("value"))
    window = format_duration(p["window_seconds"])
    text = (
        f"[{prefix}] {escape(p['rule'])} ({escape(p['topic'])}): {label} {value} "
        f"({escape(_comparison(p))}) over {window}, {int(p.get('count', 0))} articles"
    )
    if p["kind"] == "resolved" and p.get("reason"):
        text += f"; {escape(REASON_TEXT.get(str(p['reason']), str(p['reason'])))}"
    note = history_note(p)
    if note:
        text = f"[{escape(note)}] {text}"
    headlines = list(p.get("headlines") or [])[:3]
    if headlines:
        titles = "; ".join(
            escape(truncate(" ".join(str(h.get("title") or "").split()), 120)) for h in headlines
        )
        text += f". Top: {titles}"
    return truncate(text, TEXT_LIMIT)


def render_resolved_original(
    fired: dict[str, Any], resolved: dict[str, Any], public_url: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The original alert message, edited to show it resolved (for `chat.update`)."""
    text, blocks = render_slack(fired, public_url)
    title = truncate(
        strip_bidi(
            f"✅ RESOLVED (was {str(fired.get('severity', '')).upper()}) · {fired['rule']} · {fired['topic']}"
        ),
        HEADER_LIMIT,
    )
    blocks[0] = {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}
    metric = resolved["metric"]
    reason = REASON_TEXT.get(str(resolved.get("reason")), str(resolved.get("reason") or ""))
    note = (
        f"*Resolved* {_time(resolved.get('at'))}: {escape(METRIC_LABELS.get(metric, metric).lower())} "
        f"now {escape(format_value(metric, resolved.get('value')))} — {escape(reason)}"
    )
    blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": truncate(note, SECTION_LIMIT)}})
    return truncate("[Resolved] " + text, TEXT_LIMIT), blocks[:MAX_BLOCKS]


def render_console(p: dict[str, Any]) -> str:
    """A readable, unescaped multi-line text for the log/console (nothing parses it); no bidi controls."""
    metric = p["metric"]
    lines = [
        _title(p),
        f"  {METRIC_LABELS.get(metric, metric)} = {format_value(metric, p.get('value'))} ({_comparison(p)}), "
        f"window {format_duration(p['window_seconds'])}, {int(p.get('count', 0))} articles",
    ]
    note = history_note(p)
    if note:
        lines.append(f"  {note}")
    if p["kind"] == "resolved" and p.get("reason"):
        lines.append(f"  resolved: {REASON_TEXT.get(str(p['reason']), str(p['reason']))}")
    for h in list(p.get("headlines") or [])[:MAX_HEADLINES]:
        title = " ".join(str(h.get("title") or "(untitled)").split())
        lines.append(
            f"  {float(h.get('score', 0.0)):+.2f}  {title}  [{h.get('source') or ''}] {h.get('url') or ''}"
        )
    return strip_bidi("\n".join(lines))
