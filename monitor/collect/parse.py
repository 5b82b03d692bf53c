"""Parse fetched bytes into feed entries with feedparser, after settling the character set ourselves.

feedparser's own guess (RFC 3023 rules, then UTF-8, then windows-1252) turns an undeclared GB2312,
Big5 or Shift-JIS feed into mojibake, and `text/xml` without a charset means US-ASCII to it. So the
encoding is resolved first - BOM, UTF-16 byte pattern, valid UTF-8, the declared charsets (HTTP header,
XML declaration, with the supersets browsers use), then charset-normalizer - the body is transcoded to
UTF-8 and feedparser parses that, told the response's media type and the feed URL (for relative links).
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import xml.sax
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import feedparser
from charset_normalizer import from_bytes

log = logging.getLogger(__name__)


class ParseError(Exception):
    """The body is not a feed at all (HTML page, unrecognised document). `reason`: html | not_feed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ParsedFeed:
    entries: list[Any]  # feedparser entries (FeedParserDict)
    version: str  # rss20, atom10, rss10, rss091n, ...
    encoding: str  # the codec the body was decoded with
    encoding_source: str  # bom | utf-16 | utf-8 | http | xml | detected | fallback
    title: str = ""
    link: str | None = None
    language: str | None = None
    problem: str | None = None  # malformed XML: what and where (entries are what the loose parser recovered)
    notes: list[str] = field(default_factory=list)


# Declared charset -> codecs to try, supersets first (what browsers do, per the WHATWG Encoding Standard).
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "gb18030": ("gb18030",),
    "big5": ("big5hkscs", "cp950"),
    "cp950": ("cp950", "big5hkscs"),
    "big5hkscs": ("big5hkscs",),
    "shift_jis": ("cp932", "shift_jis"),
    "cp932": ("cp932",),
    "euc_jp": ("euc_jp", "cp932"),
    "euc_kr": ("cp949",),
    "cp949": ("cp949",),
    "latin_1": ("cp1252",),
    "iso8859_1": ("cp1252",),
    "ascii": ("cp1252",),
    "tis_620": ("cp874",),
    "iso8859_9": ("cp1254",),
}
# Among charset-normalizer's equally good guesses, prefer the encodings common on the web.
_PREFERRED = (
    "utf_8",
    "cp1252",
    "gb18030",
    "big5",
    "big5hkscs",
    "cp950",
    "cp932",
    "shift_jis",
    "euc_jp",
    "cp949",
    "euc_kr",
    "cp1251",
    "koi8_r",
    "cp1250",
    "iso8859_2",
    "cp1256",
    "cp1253",
    "cp1254",
)

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?\?>", re.DOTALL)
_XML_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""", re.DOTALL)
_HTML_START = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_FEED_LINK = re.compile(
    r"""<link\b[^>]*type\s*=\s*["']application/(?:rss|atom)\+xml["'][^>]*>""", re.IGNORECASE
)
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def _codec(name: str | None) -> str | None:
    """Python's canonical codec name for a charset label, or None when unknown."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name.replace("-", "_")
    except LookupError:
        return None


def _content_type(content_type: str | None) -> tuple[str, str | None]:
    """(media type, charset) of a Content-Type header."""
    if not content_type:
        return "", None
    media, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media.strip().lower(), charset


def _sniff_unicode(body: bytes) -> tuple[str, str] | None:
    """BOMs and the UTF-16/32 byte patterns of '<' (XML spec, appendix F). Returns (codec, source)."""
    if body.startswith(codecs.BOM_UTF8):
        return "utf_8_sig", "bom"
    if body.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf_32", "bom"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf_16", "bom"
    head = body[:4]
    if head == b"\x00\x00\x00<":
        return "utf_32_be", "utf-16"
    if head == b"<\x00\x00\x00":
        return "utf_32_le", "utf-16"
    sample = body[:256]
    if len(sample) >= 8:
        even_nulls = sample[0::2].count(0)
        odd_nulls = sample[1::2].count(0)
        half = len(sample) // 2
        if even_nulls > half * 0.6 and odd_nulls < half * 0.1:
            return "utf_16_be", "utf-16"
        if odd_nulls > half * 0.6 and even_nulls < half * 0.1:
            return "utf_16_le", "utf-16"
    return None


def _strict(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _detect(body: bytes) -> str | None:
    """charset-normalizer's guess; among near-equal guesses the common web encoding wins (cp1252 > cp1250)."""
    matches = list(from_bytes(body))
    if not matches:
        return None
    best = matches[0]
    close = [m for m in matches if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.05]

    def rank(match: Any) -> int:
        name = _codec(match.encoding) or match.encoding
        return _PREFERRED.index(name) if name in _PREFERRED else len(_PREFERRED)

    return min(close, key=rank).encoding


def decode_body(body: bytes, content_type: str | None = None) -> tuple[str, str, str]:
    """Decode a feed body: (text, codec, source). Never raises; the last resort is cp1252 with replacement."""
    sniffed = _sniff_unicode(body)
    if sniffed:
        text = _strict(body, sniffed[0])
        if text is not None:
            return text.lstrip("\ufeff"), sniffed[0], sniffed[1]
    text = _strict(body, "utf_8")
    if text is not None:
        return text, "utf_8", "utf-8"
    _, http_charset = _content_type(content_type)
    match = _XML_DECL_ENCODING.match(body[:512])
    xml_charset = match.group(1).decode("ascii") if match else None
    declared = [(c, src) for c, src in ((_codec(http_charset), "http"), (_codec(xml_charset), "xml")) if c]
    # 1. A declared multi-byte charset (with its browser superset) that decodes cleanly.
    for codec, source in declared:
        if _is_single_byte(codec):
            continue
        for candidate in _SUPERSETS.get(codec, (codec,)):
            text = _strict(body, candidate)
            if text is not None:
                return text, candidate, source
    # 2. A single-byte charset named by the document itself.
    for codec, source in declared:
        if source == "xml" and _is_single_byte(codec):
            candidate = _SUPERSETS.get(codec, (codec,))[0]
            text = _strict(body, candidate)
            if text is not None:
                return text, candidate, source
    # 3. Nothing usable declared, or only a server default like ISO-8859-1 (which decodes anything,
    #    so it proves nothing): detect, and keep a multi-byte detection over the server's label.
    detected = _codec(_detect(body))
    http_single = next((c for c, src in declared if src == "http" and _is_single_byte(c)), None)
    if detected and not (http_single and _is_single_byte(detected)):
        for candidate in _SUPERSETS.get(detected, (detected,)):
            text = _strict(body, candidate)
            if text is not None:
                return text, candidate, "detected"
    if http_single:
        candidate = _SUPERSETS.get(http_single, (http_single,))[0]
        text = _strict(body, candidate)
        if text is not None:
            return text, candidate, "http"
    return body.decode("cp1252", errors="replace"), "cp1252", "fallback"


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(("cp12", "cp8", "iso8859", "latin", "koi8", "mac", "ascii", "tis"))


def _utf8_document(text: str) -> bytes:
    """The document as UTF-8 with its XML declaration saying so."""
    data = text.encode("utf-8")
    decl = _XML_DECL.match(data)
    if decl:
        fixed = re.sub(rb"""encoding\s*=\s*["'][^"']*["']""", b'encoding="utf-8"', decl.group(0))
        data = fixed + data[decl.end() :]
    return data


# Characters XML 1.0 forbids, raw or as references: NUL and C0 controls, lone surrogates, U+FFFE/U+FFFF.
# feedparser's loose parser crashes on `&#xD800;`, and PostgreSQL refuses NUL; both are dropped up front.
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CHAR_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")


def _allowed(code: int) -> bool:
    if code in (0x9, 0xA, 0xD):
        return True
    return 0x20 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF and code not in (0xFFFE, 0xFFFF)


def _sanitize(text: str) -> tuple[str, int]:
    """The text without characters XML forbids (raw or as character references), and how many went."""
    cleaned, raw = _BAD_CHARS.subn("", text)
    refs = 0

    def drop(match: re.Match) -> str:
        nonlocal refs
        code = int(match.group(1), 16) if match.group(1) else int(match.group(2))
        if _allowed(code):
            return match.group(0)
        refs += 1
        return ""

    cleaned = _CHAR_REF.sub(drop, cleaned)
    return cleaned, raw + refs


def _describe_bozo(exc: BaseException) -> str:
    if isinstance(exc, xml.sax.SAXParseException):
        return (
            f"malformed XML: {exc.getMessage()} at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
        )
    text = str(exc).strip() or type(exc).__name__
    return f"malformed feed: {text}"


def _html_feed_link(text: str, base: str | None) -> str | None:
    for tag in _FEED_LINK.findall(text[:65536]):
        href = _HREF.search(tag)
        if href:
            return urljoin(base or "", href.group(1))
    return None


def parse_feed(body: bytes, content_type: str | None = None, url: str | None = None) -> ParsedFeed:
    """Parse a feed body. Malformed XML still yields what parses (`problem` says what was wrong);
    a document that is not a feed at all raises ParseError."""
    if not body or not body.strip():
        raise ParseError("empty", "empty response body")
    text, codec, source = decode_body(body, content_type)
    media_type, _ = _content_type(content_type)
    # No Content-Location: feedparser would resolve RSS guids against it (`guid` is a permalink by
    # default), making ids depend on where the feed lives. Relative links are resolved in normalize.
    headers = {"content-type": f"{media_type or 'application/xml'}; charset=utf-8"}
    # BytesIO: feedparser treats a bare str/bytes argument as a possible file name or URL.
    # HTML sanitising and relative-URI rewriting inside content are skipped: the text is reduced to
    # plain text later (monitor.collect.normalize), which also drops scripts and styles.
    text, removed = _sanitize(text)
    try:
        result = feedparser.parse(
            io.BytesIO(_utf8_document(text)),
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # noqa: BLE001 - a parser crash on hostile input is the document's problem
        raise ParseError(
            "not_feed", f"the feed parser failed on this document: {type(exc).__name__}: {exc}"
        ) from None
    notes: list[str] = []
    if removed:
        notes.append(f"removed {removed} characters XML does not allow")
    problem = None
    if result.get("bozo"):
        exc = result.get("bozo_exception")
        if isinstance(exc, feedparser.NonXMLContentType):
            notes.append(f"served as {media_type or 'no content type'}, not an XML media type")
        elif isinstance(exc, feedparser.CharacterEncodingOverride | feedparser.CharacterEncodingUnknown):
            notes.append(str(exc))
        elif exc is not None:
            problem = _describe_bozo(exc)
    version = result.get("version") or ""
    if not version and not result.entries:
        if _HTML_START.search(text[:4096]) or media_type in ("text/html", "application/xhtml+xml"):
            found = _html_feed_link(text, url)
            hint = f"; the page links to a feed at {found}" if found else ""
            raise ParseError("html", f"the URL serves an HTML page, not an RSS/Atom feed{hint}")
        raise ParseError("not_feed", f"not an RSS or Atom feed ({problem or 'no feed elements found'})")
    if source not in ("utf-8", "bom") and codec != "utf_8":
        notes.append(f"decoded as {codec} ({source})")
    feed = result.get("feed", {})
    return ParsedFeed(
        entries=list(result.entries),
        version=version or "unknown",
        encoding=codec,
        encoding_source=source,
        title=feed.get("title", "") or "",
        link=feed.get("link"),
        language=feed.get("language"),
        problem=problem,
        notes=notes,
    )
