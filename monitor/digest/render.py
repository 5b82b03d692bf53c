"""A digest as text (terminal, console log) and as a Slack message (Block Kit with a plain `text` fallback).

The Slack form follows the alert messages' rules (monitor/notify/message.py): every text from feeds or
config is escaped, so a headline containing `<!channel>` pings nobody; links must be http(s); one section
per topic, cut to Block Kit's 3000 characters, at most 50 blocks. Times are shown in the digest's zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from monitor.alerts.metrics import metric_label
from monitor.digest.content import AlertNote, DigestContent, Tally, TopicDigest, TopStory
from monitor.notify.message import (
    HEADER_LIMIT,
    MAX_BLOCKS,
    MRKDWN,
    PLAIN,
    REASON_TEXT,
    SECTION_LIMIT,
    TEXT_LIMIT,
    TITLE_LIMIT,
    Style,
    dashboard_link,
    escape,
    format_value,
    plural,
    safe_link,
    truncate,
)
from monitor.textsafe import strip_bidi

ALERT_ICON = {"fired": "🔴", "resolved": "✅"}


def _local(content: DigestContent, at: datetime) -> str:
    return at.astimezone(ZoneInfo(content.timezone)).strftime("%Y-%m-%d %H:%M")


def title(content: DigestContent) -> str:
    """`Daily digest · 2026-03-28 08:00 → 2026-03-29 08:00 Europe/Berlin`."""
    kind = {"daily": "Daily digest", "weekly": "Weekly digest"}.get(content.schedule or "", "Digest")
    p = content.period
    return f"{kind} · {_local(content, p.start)} → {_local(content, p.end)} {content.timezone}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _volume(t: TopicDigest, style: Style) -> str:
    """`Volume: 5 stories (14 articles) · period before: 3 stories (+2)`."""
    now, before = t.current, t.previous
    text = f"Volume: {style.bold(plural(now.stories, 'story'))} ({plural(now.articles, 'article')})"
    change = now.stories - before.stories
    return text + f" · period before: {plural(before.stories, 'story')} ({change:+d})"


def _sentiment(t: TopicDigest, style: Style) -> str:
    """`Sentiment: -0.42 · 60% negative, 20% positive · period before: +0.10 (change -0.52)`."""
    now, before = t.current, t.previous
    if now.mean_sentiment is None:
        return f"Sentiment: n/a · period before: {_signed(before.mean_sentiment)}"
    text = f"Sentiment: {style.bold(_signed(now.mean_sentiment))} · {_shares(now)}"
    text += f" · period before: {_signed(before.mean_sentiment)}"
    if before.mean_sentiment is not None:
        text += f" (change {now.mean_sentiment - before.mean_sentiment:+.2f})"
    return text


def _shares(t: Tally) -> str:
    return f"{t.negative_share or 0:.0%} negative, {t.positive_share or 0:.0%} positive"


def _votes(story: TopStory) -> str:
    return ", ".join(f"{topic} {sentiment:+.2f}" for topic, sentiment, _label in story.votes)


def _story_line(story: TopStory, style: Style) -> str:
    """`• Headline — 7 sources, 9 articles · nvidia -0.83, tpu +0.41` (the headline linked in Slack)."""
    headline = truncate(" ".join(story.headline.split()) or "(untitled)", TITLE_LIMIT)
    link = safe_link(story.url) if style.markup else None
    shown = f"<{link}|{escape(headline)}>" if link else style.text(headline)
    line = f"• {shown} — {plural(story.sources, 'source')}, {plural(story.articles, 'article')}"
    line += f" · {style.text(_votes(story))}"
    if not style.markup and story.url:
        line += f"\n    {strip_bidi(story.url)}"
    return line


def _alert_line(content: DigestContent, note: AlertNote, style: Style) -> str:
    """`• 🔴 2026-03-28 09:15 fired nvidia-drop: mean sentiment -0.42 (threshold -0.30)`."""
    metric = note.metric or ""
    label = (metric_label(metric) if metric else "value").lower()
    line = (
        f"• {ALERT_ICON.get(note.kind, '')} {_local(content, note.at)} {note.kind} {style.bold(note.rule)}: "
        f"{style.text(label)} {format_value(metric, note.value)}"
    )
    if note.kind == "fired" and note.threshold is not None:
        line += f" (threshold {format_value(metric, note.threshold)})"
    if note.kind == "resolved" and note.reason:
        line += f" ({style.text(REASON_TEXT.get(note.reason, note.reason))})"
    return line


def topic_lines(content: DigestContent, t: TopicDigest, style: Style) -> list[str]:
    """One topic's section: volume, sentiment, top stories, alerts."""
    lines = [_volume(t, style), _sentiment(t, style)]
    if t.top_stories:
        lines.append(style.bold("Top stories") + " (most sources first):")
        lines += [_story_line(story, style) for story in t.top_stories]
    if t.alerts:
        lines.append(style.bold("Alerts") + ":")
        lines += [_alert_line(content, note, style) for note in t.alerts]
    return lines


def render_text(content: DigestContent) -> str:
    """Plain text for the terminal and the console log: no markup, no escaping, no bidi controls."""
    p = content.period
    lines = [
        title(content) + (f" ({content.name})" if content.name != "digest" else ""),
        f"Compared with the period before: {_local(content, p.previous_start)} → {_local(content, p.start)}",
    ]
    for t in content.topics:
        lines += ["", t.topic] + [f"  {line}" for line in topic_lines(content, t, PLAIN)]
    return strip_bidi("\n".join(lines))


def render_slack(content: DigestContent, public_url: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(text fallback, blocks): a header, a section per topic, and a context line with the period compared."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate(strip_bidi("📰 " + title(content)), HEADER_LIMIT),
            },
        }
    ]
    for t in content.topics[: MAX_BLOCKS - 2]:
        heading = f"*{escape(t.topic)}*"
        link = dashboard_link(public_url, t.topic)
        if link:
            heading += f" · <{link}|dashboard>"
        text = "\n".join([heading, *topic_lines(content, t, MRKDWN)])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}})
    p = content.period
    context = (
        f"digest `{escape(content.name)}` · compared with {_local(content, p.previous_start)} → "
        f"{_local(content, p.start)} {escape(content.timezone)} · stories counted once however many copies"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return fallback_text(content), blocks[:MAX_BLOCKS]


def fallback_text(content: DigestContent) -> str:
    """`Daily digest · … : nvidia 5 stories (+2), sentiment -0.42 (was +0.10), 1 alert fired; tpu …`."""
    parts = []
    for t in content.topics:
        part = f"{escape(t.topic)} {plural(t.current.stories, 'story')} "
        part += (
            f"({t.current.stories - t.previous.stories:+d}), sentiment {_signed(t.current.mean_sentiment)} "
        )
        part += f"(was {_signed(t.previous.mean_sentiment)})"
        fired = sum(note.kind == "fired" for note in t.alerts)
        if fired:
            part += f", {plural(fired, 'alert')} fired"
        parts.append(part)
    return truncate(f"{escape(title(content))}: " + "; ".join(parts), TEXT_LIMIT)
