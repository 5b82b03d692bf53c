"""Slack message rendering: content, escaping, Block Kit limits, Chinese text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from monitor.notify.message import escape, render_console, render_resolved_original, render_slack, safe_link
from monitor.notify.transports import parse_retry_after

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def payload(**overrides: object) -> dict:
    data = {
        "v": 1,
        "kind": "fired",
        "key": "abc-1",
        "fingerprint": "f00dfeed",
        "rule": "nvidia-drop",
        "topic": "nvidia",
        "severity": "critical",
        "metric": "mean_sentiment",
        "direction": "below",
        "threshold": -0.3,
        "clear": -0.1,
        "min_articles": 5,
        "value": -0.5234,
        "count": 12,
        "window_seconds": 21600,
        "window_start": "2026-03-02T09:00:00Z",
        "window_end": "2026-03-02T15:00:00Z",
        "baseline_seconds": None,
        "at": "2026-03-02T15:00:00Z",
        "fired_at": "2026-03-02T15:00:00Z",
        "headline_order": "most_negative",
        "headlines": [
            {
                "title": "Nvidia loses $140bn in days as Google pitches TPUs to Meta",
                "url": "https://news.test/a?x=1&y=2",
                "source": "Example Times",
                "score": -0.91,
            },
            {
                "title": "英伟达股价下跌，谷歌向Meta推销TPU",
                "url": "https://news.test/zh/英伟达",
                "source": "财经网",
                "score": -0.8,
            },
        ],
    }
    data.update(overrides)
    return data


def all_text(blocks: list[dict], text: str) -> str:
    return json.dumps(blocks, ensure_ascii=False) + text


def test_message_names_rule_topic_value_threshold_window_count_and_headlines() -> None:
    text, blocks = render_slack(payload(), public_url="https://monitor.example.com/")
    assert blocks[0]["type"] == "header"
    header = blocks[0]["text"]["text"]
    assert "CRITICAL" in header and "nvidia-drop" in header and "nvidia" in header
    summary = blocks[1]["text"]["text"]
    assert "-0.52" in summary and "≤ -0.30" in summary and "clears above -0.10" in summary
    assert "last 6h" in summary and "*12* articles" in summary
    lines = [b["text"]["text"] for b in blocks if b["type"] == "section"][2:]
    assert lines[0].startswith("• <https://news.test/a?x=1&amp;y=2|Nvidia loses $140bn")
    assert "_Example Times_" in lines[0] and "score -0.91" in lines[0]
    assert "英伟达股价下跌，谷歌向Meta推销TPU" in lines[1] and "财经网" in lines[1]  # Chinese intact
    assert "%E8%8B%B1" in lines[1]  # non-ASCII in the URL is percent-encoded
    context = blocks[-1]["elements"][0]["text"]
    assert "<https://monitor.example.com/?topic=nvidia|Open the dashboard>" in context
    assert text.startswith("[CRITICAL] nvidia-drop (nvidia): mean sentiment -0.52")
    assert "Nvidia loses $140bn" in text


def test_no_dashboard_link_without_public_url() -> None:
    _, blocks = render_slack(payload())
    assert "dashboard" not in json.dumps(blocks)


def test_mentions_and_ampersands_in_article_text_are_escaped() -> None:
    evil = [
        {
            "title": "<!channel> Nvidia & AMD <@U123> <!here> crash",
            "url": "https://x.test/a>b|c<d",
            "source": "<!everyone> & co",
            "score": -0.9,
        },
        {
            "title": "<https://evil.test|click me>",
            "url": "javascript:alert(1)",
            "source": None,
            "score": -0.8,
        },
    ]
    text, blocks = render_slack(payload(headlines=evil, rule="r&d", topic="nvidia"))
    everything = all_text(blocks, text)
    for raw in ("<!channel>", "<@U123>", "<!here>", "<!everyone>", "<https://evil.test", "javascript:"):
        assert raw not in everything
    assert "&lt;!channel&gt; Nvidia &amp; AMD &lt;@U123&gt;" in everything
    assert "&lt;!everyone&gt; &amp; co" in everything
    assert "https://x.test/a%3Eb%7Cc%3Cd" in everything
    assert escape("a & <b>") == "a &amp; &lt;b&gt;"
    assert safe_link("ftp://x.test/") is None and safe_link("mailto:x@y") is None


def test_block_kit_limits_hold_with_huge_input() -> None:
    huge = [
        {
            "title": "N" * 10_000 + "&" * 3000,
            "url": "https://x.test/" + "p" * 5000,
            "source": "S" * 5000,
            "score": -0.5,
        }
        for _ in range(40)
    ]
    text, blocks = render_slack(payload(headlines=huge, rule="r" * 100, topic="t" * 64))
    assert len(blocks) <= 50
    assert len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            assert len(element["text"]) <= 3000
    assert len([b for b in blocks if b["type"] == "section"]) == 2 + 5  # top five headlines only
    assert 0 < len(text) <= 3000


def test_long_chinese_titles_are_cut_by_characters() -> None:
    title = "英伟达" * 400
    _, blocks = render_slack(
        payload(headlines=[{"title": title, "url": None, "source": "新浪", "score": -0.4}])
    )
    line = blocks[3]["text"]["text"]
    assert "英伟达英伟达" in line and line.encode("utf-8").decode("utf-8") == line
    assert "…" in line


def test_resolved_and_reminder_messages() -> None:
    resolved = payload(kind="resolved", value=0.05, reason="cleared", headline_order="most_positive")
    text, blocks = render_slack(resolved)
    assert "RESOLVED" in blocks[0]["text"]["text"] and text.startswith("[Resolved]")
    assert "back past its clear level" in blocks[1]["text"]["text"]
    text, blocks = render_resolved_original(payload(), resolved)
    assert blocks[0]["text"]["text"].startswith("✅ RESOLVED (was CRITICAL)")
    assert "Resolved" in blocks[1]["text"]["text"] and "+0.05" in blocks[1]["text"]["text"]
    assert "Nvidia loses" in json.dumps(blocks)  # the original evidence stays
    quiet = render_slack(payload(kind="resolved", value=None, reason="no_articles", headlines=[]))[0]
    assert "news went quiet" in quiet
    _, blocks = render_slack(payload(kind="reminder"))
    assert "STILL FIRING" in blocks[0]["text"]["text"]


def test_metric_formats() -> None:
    _, blocks = render_slack(
        payload(metric="negative_share", direction="above", threshold=0.5, clear=0.35, value=0.64)
    )
    assert "*64%*" in blocks[1]["text"]["text"] and "≥ 50%" in blocks[1]["text"]["text"]
    ratio = payload(
        metric="volume_ratio",
        direction="above",
        threshold=3.0,
        clear=1.5,
        value=4.25,
        baseline_seconds=604800,
        baseline_count=70,
        baseline_value=0.42,
        headline_order="recent",
    )
    _, blocks = render_slack(ratio)
    assert "4.2×" in blocks[1]["text"]["text"] and "the 7d before" in blocks[1]["text"]["text"]


def test_console_rendering_is_plain() -> None:
    out = render_console(
        payload(
            headlines=[{"title": "<!channel> & co", "url": "https://x.test/", "source": "S", "score": -0.9}]
        )
    )
    assert "<!channel> & co" in out and "nvidia-drop" in out


def test_retry_after_in_seconds_and_as_http_date() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    now = datetime(2026, 3, 2, 15, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 02 Mar 2026 15:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("Mon, 02 Mar 2026 14:00:00 GMT", now=now) == 0.0  # already past
    assert parse_retry_after("Tue, 02 Mar 2027 15:00:00 GMT", now=now) == 3600.0  # capped
    assert (
        parse_retry_after("soon") is None
        and parse_retry_after(None) is None
        and parse_retry_after("") is None
    )
    assert (
        parse_retry_after((now + timedelta(seconds=3)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now=now) == 3.0
    )


def test_bidi_controls_never_reach_slack_or_the_console() -> None:
    # Stored before collection stripped them, or in the config: an unterminated U+202E in a title would
    # show the "+0.01" after it as "10.0+"; U+2066-U+2069 isolates likewise reorder.
    rlo = "\u202e"
    headlines = [
        {"title": f"Nvidia {rlo}slips", "url": "https://x.test/a", "source": f"Wire{rlo}", "score": 0.01},
        {"title": "\u2067TPU\u2069 wins", "url": None, "source": "\u202bS\u202c", "score": -0.02},
    ]
    fired = payload(headlines=headlines, topic=f"nvidia{rlo}")
    text, blocks = render_slack(fired, public_url="https://monitor.example.com/")
    resolved_text, resolved_blocks = render_resolved_original(
        fired, payload(kind="resolved", reason="cleared")
    )
    console = render_console(fired)
    for shown in (all_text(blocks, text), all_text(resolved_blocks, resolved_text), console):
        assert not any("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069" for ch in shown)
    lines = [b["text"]["text"] for b in blocks if b["type"] == "section"][2:]
    assert lines[0] == "• <https://x.test/a|Nvidia slips> — _Wire_ · score +0.01"
    assert lines[1] == "• TPU wins — _S_ · score -0.02"
    assert "+0.01  Nvidia slips  [Wire]" in console
