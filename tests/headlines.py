"""Real-style headlines and RSS documents for the alert full-path test and the latency benchmark."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

NEGATIVE_NVIDIA = [
    "Nvidia loses $140bn in days as Google pitches TPUs to Meta",
    "Nvidia shares plunge as Meta weighs Google's TPUs for its data centers",
    "Nvidia stock tumbles after report that Meta will rent Google chips",
    "Nvidia slumps as investors fear AI chip demand is peaking",
    "Nvidia shares sink on worries over circular AI financing",
    "Nvidia falls sharply as hyperscalers shift to custom silicon",
    "Nvidia suffers worst week in months amid AI bubble fears",
    "Nvidia stock drops as China bans purchases of its AI chips",
    "Nvidia slides after Michael Burry warns of AI bubble",
    "Nvidia shares crash as export curbs hit data-center sales",
    "Nvidia plunges as analysts cut targets on weaker margins",
    "Nvidia shares fall for a fifth day as chip selloff deepens",
]

POSITIVE_NVIDIA = [
    "Nvidia beats estimates on record data-center revenue",
    "Nvidia shares surge after blowout earnings and strong guidance",
    "Nvidia stock jumps as Blackwell demand stays off the charts",
    "Nvidia rallies to record high on surging AI chip orders",
    "Nvidia soars after raising its revenue forecast",
    "Nvidia gains as hyperscalers boost spending on its GPUs",
    "Nvidia shares climb after a record quarter for data-center sales",
    "Nvidia stock rises as analysts raise price targets",
    "Nvidia wins major new AI supercomputer contract",
    "Nvidia posts record profit as AI boom accelerates",
]


def positive_run(n: int) -> list[str]:
    """`n` distinct positive headlines (variants of the list above)."""
    return [
        f"{POSITIVE_NVIDIA[i % len(POSITIVE_NVIDIA)]} ({i // len(POSITIVE_NVIDIA) + 1})" for i in range(n)
    ]


def negative_run(n: int) -> list[str]:
    return [
        f"{NEGATIVE_NVIDIA[i % len(NEGATIVE_NVIDIA)]} ({i // len(NEGATIVE_NVIDIA) + 1})" for i in range(n)
    ]


def rss(items: list[tuple[str, str, datetime]], title: str = "Chip wire") -> bytes:
    """An RSS 2.0 document of (guid, title, published) items, linking to https://news.test/<guid>."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>https://news.test/</link><description>test</description>",
    ]
    for guid, headline, published in items:
        parts.append(
            f"<item><title>{escape(headline)}</title><link>https://news.test/{guid}</link>"
            f'<guid isPermaLink="false">{guid}</guid><pubDate>{format_datetime(published)}</pubDate>'
            f'<source url="https://news.test/">Chip Wire</source></item>'
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def items(
    prefix: str, headlines: list[str], newest: datetime, spacing: timedelta
) -> list[tuple[str, str, datetime]]:
    return [(f"{prefix}-{i}", h, newest - i * spacing) for i, h in enumerate(headlines)]
