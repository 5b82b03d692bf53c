"""Normalisation: plain text, dates, language, canonical URLs, dedupe keys."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from feedserver import FEEDS_DIR

from monitor.collect.dedupe import dedupe_entries
from monitor.collect.normalize import (
    canonical_url,
    detect_language,
    html_to_text,
    normalize_entry,
    sane_date,
)
from monitor.collect.parse import parse_feed

NOW = datetime(2025, 11, 25, 15, 0, tzinfo=UTC)


def entries(name: str, base: str = "https://feeds.example.com/feed.xml", hint: str | None = None) -> list:
    parsed = parse_feed((FEEDS_DIR / name).read_bytes(), "application/xml")
    return [
        normalize_entry(e, now=NOW, base_url=base, language_hint=hint or parsed.language)
        for e in parsed.entries
    ]


# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://Example.COM:443/a/b?utm_source=rss&utm_medium=feed&id=7#top",
            "https://example.com/a/b?id=7",
        ),
        ("http://example.com:80/x?fbclid=IwAR0&gclid=abc&msclkid=1", "http://example.com/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com/x?b=2&a=1", "https://example.com/x?b=2&a=1"),
        ("https://example.com", "https://example.com/"),
        # Bing News redirect: the article URL is in `url=` (and itself carries utm_*).
        (
            "http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=1&url=https%3a%2f%2fwww.example-finance.com"
            "%2fnvidia%3futm_source%3dbing%26id%3d42&c=1&mkt=en-us",
            "https://www.example-finance.com/nvidia?id=42",
        ),
        # Google redirect links (alerts, search): `url=` or `q=`.
        (
            "https://www.google.com/url?rct=j&sa=t&url=https://www.ft.com/content/abc&ct=ga",
            "https://www.ft.com/content/abc",
        ),
        (
            "https://www.google.com/url?q=https://example.org/story%3Fx%3D1&sa=U",
            "https://example.org/story?x=1",
        ),
        # Google News article links are opaque offline: kept as they are.
        (
            "https://news.google.com/rss/articles/CBMiqAFBVV95cUxPc2ZlbVhUa0RqM3BnS2Q4?oc=5",
            "https://news.google.com/rss/articles/CBMiqAFBVV95cUxPc2ZlbVhUa0RqM3BnS2Q4?oc=5",
        ),
        ("mailto:news@example.com", None),
        ("javascript:alert(1)", None),
        ("", None),
    ],
)
def test_canonical_url(url: str, expected: str | None) -> None:
    assert canonical_url(url) == expected


def test_bing_ck_link_is_unwrapped() -> None:
    target = "https://www.reuters.com/technology/nvidia-story-2025-11-25/"
    encoded = base64.urlsafe_b64encode(target.encode()).decode().rstrip("=")
    assert canonical_url(f"https://www.bing.com/ck/a?!&&p=abc&ptn=3&u=a1{encoded}&ntb=1") == target


def test_relative_links_resolve_against_the_feed_url() -> None:
    assert (
        canonical_url("/posts/x", "https://blog.example.com/feed.atom") == "https://blog.example.com/posts/x"
    )


# ----------------------------------------------------------------------------- text


def test_html_to_text_drops_scripts_styles_and_collapses_whitespace() -> None:
    html = (
        "<p>Shares of <a href='x'>Nvidia</a>&nbsp;fell</p><script>track()</script><style>p{}</style>"
        "<p>again &amp; again</p>"
    )
    assert html_to_text(html) == "Shares of Nvidia fell again & again"


def test_entries_are_cleaned() -> None:
    rss20 = entries("rss20.xml")
    assert rss20[0].summary.startswith(
        "Shares of Nvidia fell for a third day after a report that Meta is in talks"
    )
    assert "trackView" not in rss20[0].summary and "<" not in rss20[0].summary
    assert rss20[1].summary == 'The investor known for "The Big Short" disclosed put options on chip makers.'
    atom10 = entries("atom10.xml")
    assert atom10[0].title == "Anthropic to use up to one million Google TPUs"
    assert (
        atom10[0].summary
        == "The deal is worth tens of billions of dollars & expands Google Cloud’s TPU business."
    )
    assert atom10[1].summary == "Ironwood pods scale to 9,216 chips."
    edge = entries("edge_entries.xml")
    whitespace = next(e for e in edge if e.url == "https://edge.example.com/whitespace")
    assert whitespace.title == "Whitespace and markup in the title"
    assert whitespace.summary == "Line one. Line two & more."


def test_aggregator_titles_lose_the_publisher_suffix() -> None:
    news = entries("google_news.xml")
    assert news[0].title == "Nvidia stock falls after report Meta may use Google TPUs"
    assert news[0].source == "Reuters"
    assert news[0].summary == ""  # the description only repeated the headline and publisher
    assert news[2].url == "https://www.ft.com/content/ai-bubble-burst"


# ----------------------------------------------------------------------------- dates


def test_dates_become_aware_utc() -> None:
    rss20 = entries("rss20.xml")
    assert rss20[1].published_at == datetime(2025, 11, 25, 2, 10, tzinfo=UTC)  # -0500 converted
    atom10 = entries("atom10.xml")
    assert atom10[0].published_at == datetime(2025, 11, 20, 0, 0, tzinfo=UTC)  # +08:00 converted
    assert atom10[1].published_at == datetime(2025, 11, 19, 18, 0, tzinfo=UTC)  # only <updated>


def test_missing_absurd_and_unparseable_dates_are_none() -> None:
    edge = {e.title: e for e in entries("edge_entries.xml") if e is not None}
    assert edge["No id and no date: TSMC raises CoWoS capacity"].published_at is None
    assert edge["Absurd date in the future"].published_at is None
    assert edge["Absurd date in the past"].published_at is None
    assert edge["Unparseable date"].published_at is None


def test_sane_date_bounds() -> None:
    assert sane_date(NOW + timedelta(hours=12), NOW) == NOW + timedelta(hours=12)
    assert sane_date(NOW + timedelta(days=3), NOW) is None
    assert sane_date(datetime(1994, 12, 31, tzinfo=UTC), NOW) is None
    assert sane_date(datetime(2025, 1, 1, 8, 0), NOW) == datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("Nvidia shares fall as investors weigh competition from Google's TPUs", None, "en"),
        ("Nvidia beats estimates on record data-center revenue", None, "en"),
        ("英伟达市值数日蒸发1400亿美元，谷歌向Meta推销TPU", None, "zh"),
        ("輝達股價下跌，谷歌向Meta推銷TPU晶片", None, "zh"),
        ("エヌビディア株が下落、グーグルがメタにTPUを売り込み", None, "ja"),
        ("엔비디아 주가 하락", None, "ko"),
        (
            "Nvidia-Aktie fällt deutlich, weil Anleger über die Konkurrenz durch Googles Chips besorgt sind",
            None,
            "de",
        ),
        ("Nvidia", "zh", "zh"),
        ("", "en", "en"),
    ],
)
def test_detect_language(text: str, hint: str | None, expected: str) -> None:
    assert detect_language(text, hint) == expected


def test_entry_languages() -> None:
    assert {e.language for e in entries("zh_utf8.xml")} == {"zh"}
    assert {e.language for e in entries("rss20.xml")} == {"en"}


# ----------------------------------------------------------------------------- entries and keys


def test_entry_without_title_gets_one_from_its_text_and_empty_entries_are_dropped() -> None:
    edge = entries("edge_entries.xml")
    assert edge[-1] is None  # <item></item>
    untitled = edge[2]
    assert untitled.title.startswith("An entry without a title, a link or an id: Samsung wins")
    assert untitled.url is None and untitled.guid is None


def test_dedupe_keys_url_then_guid_then_hash() -> None:
    edge = [e for e in entries("edge_entries.xml") if e is not None]
    inputs, duplicates = dedupe_entries(edge, feed_name="edge")
    assert duplicates == 1  # the repeated <guid>edge-dup</guid> item
    keys = [i.dedupe_key for i in inputs]
    assert len(keys) == len(set(keys)) == len(edge) - 1
    # Same content under another feed: a URL key is global, a guid key is scoped to the feed.
    other, _ = dedupe_entries(edge, feed_name="other")
    by_title = {i.title: i.dedupe_key for i in other}
    mine = {i.title: i.dedupe_key for i in inputs}
    assert (
        by_title["No id and no date: TSMC raises CoWoS capacity"]
        == mine["No id and no date: TSMC raises CoWoS capacity"]
    )
    assert (
        by_title["No link, only a guid: SK Hynix HBM4 samples"]
        != mine["No link, only a guid: SK Hynix HBM4 samples"]
    )


def test_a_link_shared_by_different_entries_is_not_used_as_their_identity() -> None:
    xml = b"""<rss version="2.0"><channel><title>t</title><link>https://site.example.com/</link>
      <item><title>First story</title><link>https://site.example.com/news</link><guid>s-1</guid></item>
      <item><title>Second story</title><link>https://site.example.com/news</link><guid>s-2</guid></item>
      <item><title>Third story</title><link>https://site.example.com/</link><guid>s-3</guid></item>
    </channel></rss>"""
    parsed = parse_feed(xml, "application/rss+xml")
    items = [normalize_entry(e, now=NOW) for e in parsed.entries]
    inputs, duplicates = dedupe_entries(items, feed_name="site", not_article_urls=[parsed.link])
    assert duplicates == 0 and len({i.dedupe_key for i in inputs}) == 3


BIDI_RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>t</title><link>https://feeds.example.com/</link>
<item>
  <title>Nvidia \u202eslips&#x202C; as &amp;#x2067;buyers&amp;#x2069; wait</title>
  <link>https://example.com/a\u202e/b</link>
  <guid isPermaLink="false">id-\u2066-1</guid>
  <author>desk\u202d@example.com</author>
  <description>&lt;p&gt;Shares \u202bfell\u202c &lt;b&gt;2%&lt;/b&gt;
    \u2068today\u2069.&lt;/p&gt;</description>
  <source url="https://wire.example.com/rss">Wire\u202e</source>
</item>
</channel></rss>""".encode()


def test_bidi_controls_are_stripped_from_collected_text() -> None:
    # An unterminated U+202E would show the "+0.01" printed after this title as "10.0+".
    parsed = parse_feed(BIDI_RSS, "application/rss+xml")
    entry = normalize_entry(parsed.entries[0], now=NOW, base_url="https://feeds.example.com/feed.xml")
    assert entry is not None
    assert entry.title == "Nvidia slips as buyers wait"
    assert entry.summary == "Shares fell 2% today."
    assert entry.url == "https://example.com/a/b"
    assert (entry.guid, entry.author, entry.source) == ("id--1", "desk@example.com", "Wire")
    assert html_to_text("x\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069y") == "xy"
