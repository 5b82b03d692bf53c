"""Render a notification's stored facts as a Slack message (Block Kit + plain text) or a console line.

Safety and limits:
- Every piece of text that comes from articles or config is escaped (`&`, `<`, `>`), so a headline
  containing `<!channel>` or `<@U123>` shows literally and pings nobody; its bidi controls are dropped
  (monitor/textsafe.py), so it cannot reorder the score or the words shown after it. Link targets must be
  http(s) URLs; the characters that would end a Slack link (`<`, `>`, `|`, spaces) are percent-encoded.
- Block Kit limits: section text <= 3000 characters, header <= 150, at most 50 blocks. Titles are cut by
  characters (never bytes), so Chinese text stays intact.
- The plain `text` fallback is always set (notifications, screen readers, clients without blocks).

What a message says (the facts come from `monitor.alerts.explain`): the value against the threshold and the
clear level; the window and the evidence in it — stories, distinct publishers and articles, and the minimums
the rule asks for; the baseline (volume_ratio, sentiment_shift) or the coverage it is a share of
(coverage_share); what changed since the alert's last notice; and the top stories, one line per story with
how many publishers carry it, never a list of copies. The same lines, unescaped, are the console message and
`monitor alerts show`. Payloads stored before stories existed (no `unit`) render as they always did.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from monitor.alerts.metrics import METRICS, baseline_text, format_value, metric_label
from monitor.textsafe import strip_bidi

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
MAX_BLOCKS = 50
TITLE_LIMIT = 300
TEXT_LIMIT = 3000
MAX_HEADLINES = 5

SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
ORDER_LABELS = {
    "most_negative": "most negative first",
    "most_positive": "most positive first",
    "recent": "most recent first",
    "most_covered": "most widely carried first",
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


def plural(n: int, word: str) -> str:
    """`1 story`, `3 stories`, `1 source`, `12 articles`."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


class Style:
    """How explanation lines are written: Slack mrkdwn (escaped, bold) or plain text (console, CLI)."""

    def __init__(self, markup: bool) -> None:
        self.markup = markup

    def text(self, value: Any) -> str:
        return escape(value) if self.markup else strip_bidi(str(value))

    def bold(self, value: Any) -> str:
        return f"*{self.text(value)}*" if self.markup else self.text(value)

    def italic(self, value: Any) -> str:
        return f"_{self.text(value)}_" if self.markup else self.text(value)


MRKDWN = Style(markup=True)
PLAIN = Style(markup=False)


def explanation_lines(p: dict[str, Any], style: Style) -> list[str]:
    """Why the alert is in this state, line by line: value, window, evidence, baseline or coverage, what
    changed since the last notice, and (resolved) why it resolved."""
    metric = p["metric"]
    label = metric_label(metric)
    lines = [
        f"{style.bold(label)} is {style.bold(format_value(metric, p.get('value')))} "
        f"({style.text(_comparison(p))})"
    ]
    window = f"Window: last {format_duration(p['window_seconds'])} "
    window += f"({_time(p.get('window_start'))} – {_time(p.get('window_end'))})"
    if p.get("unit") is None or p.get("stories") is None:  # stored before stories, or nothing measured
        count, unit = int(p.get("count", 0)), "stories" if p.get("unit") == "stories" else "articles"
        lines.append(f"{window} · {style.bold(count)} {unit} (min {int(p.get('min_articles', 0))})")
    else:
        lines += [window, _evidence(p, style)]
    lines += [line for line in (_coverage(p, style), _baseline(p, style), _since_last(p, style)) if line]
    if p["kind"] == "resolved":
        reason = REASON_TEXT.get(str(p.get("reason")), str(p.get("reason") or ""))
        lines.append(f"Resolved: {style.text(reason)}")
        if p.get("fired_at"):
            lines.append(f"Fired {_time(p['fired_at'])}, resolved {_time(p.get('at'))}")
    elif p["kind"] == "reminder" and p.get("fired_at"):
        lines.append(f"Firing since {_time(p['fired_at'])}")
    ended = p.get("silence_ended")
    if isinstance(ended, dict):  # the one notice owed after a silence (monitor/alerts/silencing.py)
        held = f"{style.text(ended.get('held_back', 'notice'))} of {_time(ended.get('held_back_at'))}"
        silence = f"Silence #{style.text(ended.get('id'))} ended {_time(ended.get('ended_at'))}"
        lines.append(f"{silence}: the {held} was held back")
    return lines


def _evidence(p: dict[str, Any], style: Style) -> str:
    """`Evidence: 12 stories from 9 sources, 31 articles (…) · fires with ≥ 5 stories and ≥ 3 sources`."""
    stories, sources, articles = int(p["stories"]), int(p.get("sources") or 0), int(p.get("articles") or 0)
    text = (
        f"Evidence: {style.bold(plural(stories, 'story'))} from {style.bold(plural(sources, 'source'))}, "
        f"{plural(articles, 'article')}"
    )
    if p["unit"] == "stories" and articles > stories:
        text += " (copies of one story count once)"
    elif p["unit"] == "articles":
        text += " (every copy counts)"
    needs = []
    unit = "story" if p["unit"] == "stories" else "article"
    spec = METRICS.get(p["metric"])
    if (spec is None or spec.evidence != "count") and int(p.get("min_articles") or 0) > 0:
        needs.append(f"≥ {plural(int(p['min_articles']), unit)}")
    if int(p.get("min_sources") or 0) > 0:
        needs.append(f"≥ {plural(int(p['min_sources']), 'source')}")
    if needs:
        text += " · fires with " + " and ".join(needs)
    return text


def _coverage(p: dict[str, Any], style: Style) -> str | None:
    """coverage_share (a metric that needs the coverage total): what the share is of."""
    spec = METRICS.get(p["metric"])
    if spec is None or not spec.needs_coverage or p.get("coverage_total") is None:
        return None
    unit = "story" if p.get("unit", "stories") == "stories" else "article"
    total = int(p["coverage_total"])
    return (
        f"Coverage: {style.text(p['topic'])} is in {style.bold(int(p.get('count', 0)))} of the "
        f"{plural(total, unit)} on any watched topic"
    )


def _baseline(p: dict[str, Any], style: Style) -> str | None:
    """volume_ratio / sentiment_shift: the period the window is compared with."""
    if not p.get("baseline_seconds") or p.get("baseline_value") is None:
        return None
    base = format_duration(p["baseline_seconds"])
    unit = p.get("unit") or "articles"
    count = plural(int(p.get("baseline_count") or 0), "story" if unit == "stories" else "article")
    value = baseline_text(p["metric"], p["baseline_value"], unit)
    return f"Baseline: the {base} before · {value} ({count})"


def _since_last(p: dict[str, Any], style: Style) -> str | None:
    """`Since the last notice (fired 2026-03-02 15:00 UTC): -0.52 → -0.61 · stories 12 → 15 · 4 new …`."""
    before = p.get("previous")
    if not isinstance(before, dict):
        return None
    metric = p["metric"]
    parts = [f"{format_value(metric, before.get('value'))} → {format_value(metric, p.get('value'))}"]
    for key in ("stories", "sources"):  # shown when they changed
        if before.get(key) is not None and p.get(key) is not None and before[key] != p[key]:
            parts.append(f"{key} {int(before[key])} → {int(p[key])}")
    if p.get("new_stories") is not None:
        parts.append(f"{plural(int(p['new_stories']), 'new story')}")
    what = style.text(f"{before.get('kind', 'notice')} {_time(before.get('at'))}")
    return f"Since the last notice ({what}): " + style.text(" · ".join(parts))


def _summary(p: dict[str, Any]) -> str:
    return truncate("\n".join(explanation_lines(p, MRKDWN)), SECTION_LIMIT)


def _headline_line(h: dict[str, Any]) -> str:
    """`• <url|title> — _source_ · score -0.87` (the URL's own `|` is encoded, so the first `|` splits).

    A story also says how widely it is carried: `— _reuters.com_ +6 more sources, 12 articles`."""
    title = escape(truncate(" ".join(str(h.get("title") or "(untitled)").split()), TITLE_LIMIT))
    link = safe_link(h.get("url"))
    line = f"• <{link}|{title}>" if link else f"• {title}"
    carried = _carried(h, MRKDWN)
    if carried:
        line += f" — {carried}"
    line += f" · score {float(h.get('score', 0.0)):+.2f}"
    if h.get("new"):
        line += " · _new_"
    return truncate(line, SECTION_LIMIT)


def _carried(h: dict[str, Any], style: Style) -> str:
    """Who carries a story: its first publisher, how many more, and how many articles."""
    source = style.italic(truncate(str(h["source"]), 100)) if h.get("source") else ""
    sources, articles = h.get("sources"), h.get("articles")
    if sources is None:  # a plain article (payloads from before stories)
        return source
    parts = [source] if source else []
    others = int(sources) - (1 if source else 0)
    if others > 0:
        parts.append(f"+{plural(others, 'more source')}" if source else plural(int(sources), "source"))
    text = " ".join(parts)
    if articles is not None and int(articles) > 1:
        text += f", {plural(int(articles), 'article')}"
    return text


def render_slack(p: dict[str, Any], public_url: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(text fallback, blocks) for a fired, reminder or resolved notification, or a message its producer
    rendered itself (`rendered`: a digest, monitor/digest), which is sent as it is."""
    if "rendered" in p:
        return p["rendered"]["text"], p["rendered"]["blocks"]
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
        intro = ("*Top stories*" if _stories(p) else "*Top headlines*") + (f" ({order})" if order else "")
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


def _stories(p: dict[str, Any]) -> bool:
    """The payload lists stories (with their publishers), not single articles."""
    return any(h.get("sources") is not None for h in p.get("headlines") or [])


def _counts(p: dict[str, Any]) -> str:
    """`12 stories from 9 sources (31 articles)`, or `12 articles` for payloads from before stories."""
    if p.get("unit") is None or p.get("stories") is None:
        return f"{int(p.get('count', 0))} articles"
    stories, sources = plural(int(p["stories"]), "story"), plural(int(p.get("sources") or 0), "source")
    return f"{stories} from {sources} ({plural(int(p.get('articles') or 0), 'article')})"


def render_text(p: dict[str, Any]) -> str:
    """The plain `text` fallback (Slack parses it as mrkdwn too, so it is escaped the same way)."""
    metric = p["metric"]
    label = metric_label(metric).lower()
    prefix = {"resolved": "Resolved", "reminder": "Still firing"}.get(
        p["kind"], str(p.get("severity", "")).upper()
    )
    value = format_value(metric, p.get("value"))
    window = format_duration(p["window_seconds"])
    text = (
        f"[{prefix}] {escape(p['rule'])} ({escape(p['topic'])}): {label} {value} "
        f"({escape(_comparison(p))}) over {window}, {_counts(p)}"
    )
    if p["kind"] == "resolved" and p.get("reason"):
        text += f"; {escape(REASON_TEXT.get(str(p['reason']), str(p['reason'])))}"
    before = p.get("previous")
    if isinstance(before, dict) and p["kind"] != "fired":
        text += f"; {format_value(metric, before.get('value'))} at the last notice"
    note = history_note(p)
    if note:
        text = f"[{escape(note)}] {text}"
    headlines = list(p.get("headlines") or [])[:3]
    if headlines:
        titles = "; ".join(_short_title(h) for h in headlines)
        text += f". Top: {titles}"
    return truncate(text, TEXT_LIMIT)


def _short_title(h: dict[str, Any]) -> str:
    title = escape(truncate(" ".join(str(h.get("title") or "").split()), 120))
    if h.get("sources") is not None:
        title += f" ({plural(int(h['sources']), 'source')})"
    return title


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
    if "rendered" in resolved:  # rendered by its producer (feed health): its fallback text says why
        note = f"*Resolved* {_time(resolved.get('at'))}: {resolved['rendered']['text']}"
    else:
        metric = resolved["metric"]
        reason = REASON_TEXT.get(str(resolved.get("reason")), str(resolved.get("reason") or ""))
        note = (
            f"*Resolved* {_time(resolved.get('at'))}: {escape(metric_label(metric).lower())} "
            f"now {escape(format_value(metric, resolved.get('value')))}"
        )
        if resolved.get("unit") is not None and resolved.get("stories") is not None:
            note += f" over {escape(_counts(resolved))}"
        note += f" — {escape(reason)}"
    blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": truncate(note, SECTION_LIMIT)}})
    return truncate("[Resolved] " + text, TEXT_LIMIT), blocks[:MAX_BLOCKS]


def render_console(p: dict[str, Any]) -> str:
    """A readable, unescaped multi-line text for the log/console (nothing parses it); no bidi controls."""
    if "rendered" in p:
        return strip_bidi(p["rendered"]["console"])
    lines = [_title(p)]
    note = history_note(p)
    if note:
        lines.append(f"  {note}")
    lines += [f"  {line}" for line in explanation_lines(p, PLAIN)]
    lines += headline_lines(p)
    return strip_bidi("\n".join(lines))


def headline_lines(p: dict[str, Any]) -> list[str]:
    """The top stories (or headlines) as plain lines: score, title, who carries it, link."""
    headlines = list(p.get("headlines") or [])[:MAX_HEADLINES]
    if not headlines:
        return []
    order = ORDER_LABELS.get(str(p.get("headline_order")), "")
    lines = [("  Top stories" if _stories(p) else "  Top headlines") + (f" ({order}):" if order else ":")]
    for h in headlines:
        title = " ".join(str(h.get("title") or "(untitled)").split())
        carried = _carried(h, PLAIN)
        new = "  (new)" if h.get("new") else ""
        lines.append(
            f"  {float(h.get('score', 0.0)):+.2f}  {title}  [{carried}] {h.get('url') or ''}".rstrip() + new
        )
    return lines
