"""Parsing real feed files: every format, legacy character sets with and without declarations, bad input."""

from __future__ import annotations

import pytest
from feedserver import FEEDS_DIR, load_samples

from monitor.collect.parse import ParseError, decode_body, parse_feed

SAMPLES = load_samples()


def read(name: str) -> bytes:
    return (FEEDS_DIR / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "version", "first_title", "count"),
    [
        ("rss091.xml", "rss091n", "Nvidia ships first Blackwell systems to cloud customers", 2),
        ("rss092.xml", "rss092", None, 2),
        ("rss10.rdf", "rss10", "Amazon unveils Trainium 3 with four times the performance", 2),
        ("rss20.xml", "rss20", "Nvidia loses $140bn in days as Google pitches TPUs to Meta", 3),
        ("atom03.xml", "atom03", "Cerebras files for IPO again", 2),
        ("atom10.xml", "atom10", "Anthropic to use up to one million <em>Google TPUs</em>", 2),
    ],
)
def test_feed_formats(name: str, version: str, first_title: str | None, count: int) -> None:
    parsed = parse_feed(read(name), "application/xml")
    assert parsed.version == version
    assert parsed.problem is None
    assert len(parsed.entries) == count
    if first_title:
        assert parsed.entries[0].get("title") == first_title


@pytest.mark.parametrize(
    "content_type", ["text/xml", None, "application/octet-stream", "application/rss+xml"]
)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_legacy_charsets_decode_exactly(name: str, content_type: str | None) -> None:
    """Undeclared GB2312/Big5/Shift-JIS/windows-1252, GBK declared as GB2312, UTF-16 with and without BOM."""
    parsed = parse_feed(read(name), content_type)
    titles = [entry.get("title") for entry in parsed.entries]
    summaries = [entry.get("summary") for entry in parsed.entries]
    assert titles == [title for title, _ in SAMPLES[name]["items"]]
    assert summaries == [summary for _, summary in SAMPLES[name]["items"]]
    assert parsed.title == SAMPLES[name]["channel"]


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("gb2312_undeclared.xml", "gb18030"),
        ("big5_undeclared.xml", "big5hkscs"),
        ("shift_jis_undeclared.xml", "cp932"),
        ("windows1252_undeclared.xml", "cp1252"),
    ],
)
def test_undeclared_charsets_are_detected(name: str, codec: str) -> None:
    _, used, source = decode_body(read(name), "text/xml")
    assert (used, source) == (codec, "detected")


def test_declared_charset_uses_the_browser_superset() -> None:
    _, used, source = decode_body(read("gbk_declared_gb2312.xml"), "text/xml")
    assert (used, source) == ("gb18030", "xml")


def test_http_charset_is_used_when_the_document_says_nothing() -> None:
    text, used, source = decode_body(read("big5_undeclared.xml"), "application/rss+xml; charset=big5")
    assert source == "http" and used == "big5hkscs" and "輝達" in text


def test_utf8_body_with_a_wrong_latin1_header_stays_utf8() -> None:
    parsed = parse_feed(read("zh_utf8.xml"), "text/xml; charset=ISO-8859-1")
    assert parsed.entries[0].get("title").startswith("英伟达市值数日蒸发")


def test_windows1252_from_http_header() -> None:
    parsed = parse_feed(read("windows1252_undeclared.xml"), "text/xml; charset=windows-1252")
    assert parsed.entries[0].get("title") == "Nvidia’s “Blackwell” ramps — analysts see €40bn quarter"


def test_rss_served_as_text_html_still_parses() -> None:
    parsed = parse_feed(read("rss20.xml"), "text/html; charset=utf-8")
    assert parsed.version == "rss20" and len(parsed.entries) == 3
    assert parsed.problem is None
    assert any("not an XML media type" in note for note in parsed.notes)


def test_malformed_xml_keeps_what_parses_and_names_the_problem() -> None:
    parsed = parse_feed(read("malformed.xml"), "application/rss+xml")
    assert parsed.problem is not None
    assert parsed.problem.startswith("malformed XML:") and "line 4" in parsed.problem
    assert [e.get("title") for e in parsed.entries] == [
        "AMD & Nvidia trade blows in the AI GPU market",
        "Intel Gaudi 3 finds few takers",
        "SoftBank sells Nvidia stake to fund OpenAI bet",
    ]


def test_html_page_is_not_a_feed_and_the_message_points_to_the_real_feed() -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(
            read("not_a_feed.html"), "text/html; charset=utf-8", "https://marketdesk.example.com/ai-chips"
        )
    assert info.value.reason == "html"
    assert "HTML page, not an RSS/Atom feed" in str(info.value)
    assert "https://marketdesk.example.com/ai-chips/feed" in str(info.value)


def test_html_page_served_as_xml_is_still_recognised() -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(read("not_a_feed.html"), "application/xml")
    assert info.value.reason == "html"


@pytest.mark.parametrize(
    "body", [b'{"items": []}', b"<?xml version='1.0'?><note><to>x</to></note>", b"\x00\x01\x02garbage"]
)
def test_other_documents_are_not_feeds(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(body, "application/json")
    assert info.value.reason == "not_feed" and "not an RSS or Atom feed" in str(info.value)


@pytest.mark.parametrize("body", [b"", b"   \n\t "])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(body, "application/xml")
    assert info.value.reason == "empty"


def test_feed_strings_are_never_opened_as_files_or_urls(tmp_path) -> None:  # noqa: ANN001
    secret = tmp_path / "secret.xml"
    secret.write_text("<rss version='2.0'><channel><item><title>leak</title></item></channel></rss>")
    with pytest.raises(ParseError):
        parse_feed(str(secret).encode(), "application/xml")
