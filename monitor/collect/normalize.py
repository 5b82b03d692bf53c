"""Turn feedparser entries into clean articles: plain text, aware-UTC dates, language, canonical URL.

A missing or absurd date stays None (the store then places the article at its collection time but
keeps `published_at` NULL): inventing "now" would put old news into today's sentiment.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import html
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

from dateutil import parser as dateutil_parser

from monitor.textsafe import BIDI_CONTROLS

TITLE_MAX = 1000
SUMMARY_MAX = 8000
EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)  # before RSS existed: a broken date
FUTURE_SLACK = timedelta(days=1)  # clock skew and time zones; beyond this a date is absurd


@dataclass(frozen=True, slots=True)
class Entry:
    """One normalised feed entry (before dedupe)."""

    title: str
    summary: str
    url: str | None  # canonical
    guid: str | None
    author: str | None
    source: str | None
    language: str | None
    published_at: datetime | None
    content_hash: str


# ----------------------------------------------------------------------------- text


_BLOCK_TAGS = frozenset(
    ("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
     "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
     "section", "table", "td", "th", "tr", "ul")
)  # fmt: skip
_SKIP_TAGS = frozenset(
    ("script", "style", "noscript", "template", "iframe", "object", "svg", "head", "title")
)
_SPACE = re.compile(r"\s+")
_ENTITY = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_TAGLIKE = re.compile(r"</?[a-zA-Z][^<>]*>")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:  # noqa: ARG002
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list) -> None:  # noqa: ARG002
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


# Control characters and lone surrogates: invisible, and PostgreSQL refuses NUL in text (a whole feed's
# transaction would fail on one bad entry). Bidi controls too: they would reorder what is shown beside the
# text (monitor/textsafe.py).
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff" + BIDI_CONTROLS + "]")


def clean_whitespace(text: str) -> str:
    return _SPACE.sub(" ", _UNSAFE.sub("", text.replace("\u00a0", " "))).strip()


def html_to_text(value: str | None) -> str:
    """Visible text of an HTML fragment: scripts and styles dropped, entities decoded, spaces collapsed."""
    if not value:
        return ""
    if "<" not in value and "&" not in value:
        return clean_whitespace(value)
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser is lenient; this is belt and braces
        return clean_whitespace(html.unescape(_TAGLIKE.sub(" ", value)))
    return clean_whitespace("".join(parser.parts))


def plain_text(value: str | None) -> str:
    """A text/plain field: whitespace collapsed; entities left over from double escaping decoded."""
    if not value:
        return ""
    if "&" in value and _ENTITY.search(value):
        value = html.unescape(value)
    return clean_whitespace(value)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _detail_text(entry: Any, key: str) -> str:
    value = entry.get(key)
    if not value:
        return ""
    detail = entry.get(f"{key}_detail") or {}
    kind = (detail.get("type") or "").lower()
    # Many feeds label HTML as text (or feedparser cannot tell): markup is markup either way.
    if "html" in kind or _TAGLIKE.search(value):
        return html_to_text(value)
    return plain_text(value)


def _summary(entry: Any) -> str:
    summary = _detail_text(entry, "summary")
    if summary:
        return summary
    for content in entry.get("content") or []:
        value = content.get("value")
        if value:
            kind = (content.get("type") or "").lower()
            return html_to_text(value) if "html" in kind or _TAGLIKE.search(value) else plain_text(value)
    return ""


# ----------------------------------------------------------------------------- dates


_CJK_DATE = re.compile(
    r"(\d{4})\s*[年/.-]\s*(\d{1,2})\s*[月/.-]\s*(\d{1,2})\s*日?(?:\s*(\d{1,2})[:時时](\d{2})(?:[:分](\d{2}))?)?"
)


def sane_date(value: datetime | None, now: datetime) -> datetime | None:
    """Aware UTC, or None when missing or absurd (before 1995, or more than a day in the future)."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value < EARLIEST or value > now + FUTURE_SLACK:
        return None
    return value


def _parse_date_string(text: str) -> datetime | None:
    """Fallback for dates feedparser could not read. Naive results are taken as UTC."""
    text = text.strip()
    if not text:
        return None
    match = _CJK_DATE.search(text)
    if match:
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
    try:
        parsed = dateutil_parser.parse(text)
    except (ValueError, OverflowError, TypeError):
        return None
    return parsed


def entry_date(entry: Any, now: datetime) -> datetime | None:
    """The entry's publication time (published, else updated, else created) as aware UTC, or None."""
    for key in ("published", "updated", "created"):
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            try:
                value = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                value = None
            return sane_date(value, now)
        raw = entry.get(key)
        if raw:
            return sane_date(_parse_date_string(str(raw)), now)
    return None


# ----------------------------------------------------------------------------- language


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# Common English function words: headlines carry few, so a share of 12% is a strong signal.
_EN_WORDS_TEXT = """
    a about after against all also amid an and any are as at be because been before but by can could did
    do does for from gets had has have he her his how if in into is it its it's may more most new no not of
    off on or our out over said says sees set she should since so than that the their them there these they
    this those to under up was we were what when which while who why will with would you your"""
_EN_WORDS = frozenset(_EN_WORDS_TEXT.split())
_langdetect_lock = threading.Lock()
_langdetect_ready = False


def _langdetect(text: str) -> tuple[str, float] | None:
    global _langdetect_ready
    try:
        from langdetect import DetectorFactory, detect_langs
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    with _langdetect_lock:  # profile loading is not thread-safe; seeding makes results repeatable
        if not _langdetect_ready:
            DetectorFactory.seed = 0
            _langdetect_ready = True
        try:
            best = detect_langs(text)[0]
        except LangDetectException:
            return None
    return best.lang, best.prob


def normalize_language(code: str | None) -> str | None:
    """`zh-cn`, `zh_TW`, `en-US` -> `zh`, `zh`, `en`."""
    if not code:
        return None
    code = code.strip().lower().replace("_", "-")
    base = code.split("-")[0]
    return base if re.fullmatch(r"[a-z]{2,3}", base) else None


def detect_language(text: str, hint: str | None = None) -> str | None:
    """Language code of a text: script ratios for CJK, English function words, then langdetect; the
    feed's language is the tie-breaker for short or ambiguous text."""
    hint = normalize_language(hint)
    sample = text[:600]
    letters = sum(1 for ch in sample if ch.isalpha())
    if letters == 0:
        return hint
    kana = len(_KANA.findall(sample))
    han = len(_HAN.findall(sample))
    hangul = len(_HANGUL.findall(sample))
    if kana and kana / letters > 0.05:
        return "ja"
    if hangul / letters > 0.2:
        return "ko"
    if han / letters >= 0.2:
        return "zh"
    lower = sample.lower()
    words = _WORD.findall(lower)
    if words:
        non_ascii = sum(1 for ch in sample if ord(ch) > 127 and ch.isalpha())
        english = sum(1 for word in words if word in _EN_WORDS)
        if non_ascii / letters < 0.02 and english >= 1 and english / len(words) >= 0.12:
            return "en"
    guess = _langdetect(sample) if letters >= 12 else None
    if guess is None:
        return hint
    lang, prob = guess
    lang = normalize_language(lang)
    if prob >= 0.8 or hint is None:
        return lang
    return hint


# ----------------------------------------------------------------------------- URLs


_TRACKING_PARAMS = frozenset(
    (
        "fbclid",
        "gclid",
        "dclid",
        "gclsrc",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ocid",
        "cmpid",
        "wt.mc_id",
        "__twitter_impression",
        "ref_src",
        "ref_url",
        "spm",
        "share_token",
    )
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _unwrap_once(parts: Any) -> str | None:
    """The real URL behind a known aggregator redirect link, when it is in the link itself."""
    host = (parts.hostname or "").lower()
    path = parts.path.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if host.endswith("bing.com"):
        if path.endswith("/apiclick.aspx") and query.get("url"):
            return query["url"]
        if path == "/ck/a" and query.get("u", "").startswith("a1"):
            encoded = query["u"][2:]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
    if (host.startswith("www.google.") or host.startswith("google.")) and path == "/url":
        return query.get("url") or query.get("q")
    if host in ("l.facebook.com", "lm.facebook.com") and path == "/l.php":
        return query.get("u")
    if host == "r.search.yahoo.com":
        match = re.search(r"/RU=([^/]+)/", parts.path)
        if match:
            return unquote(match.group(1))
    if host in ("t.umblr.com", "out.reddit.com") and query.get("url"):
        return query.get("url")
    return None


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """A stable form of an article URL for dedupe and display: aggregator redirects unwrapped (where
    the target is in the link), tracking parameters and fragments dropped, host lower-cased, default
    port removed. Opaque aggregator links (Google News `articles/CBMi...`) are kept as they are."""
    if not url:
        return None
    url = _SPACE.sub("", _UNSAFE.sub("", url))
    if base:
        url = urljoin(base, url)
    for _ in range(3):
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        inner = _unwrap_once(parts)
        if not inner or not inner.lower().startswith(("http://", "https://")):
            break
        url = inner
    scheme = parts.scheme.lower()
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    pairs = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith("utm_") and key.lower() not in _TRACKING_PARAMS
    ]
    query = (
        urlencode(pairs, doseq=True)
        if pairs != parse_qsl(parts.query, keep_blank_values=True)
        else parts.query
    )
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, query, ""))


# ----------------------------------------------------------------------------- entries


def content_hash(title: str, summary: str) -> str:
    return hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()


def _entry_link(entry: Any) -> str | None:
    link = entry.get("link")
    if link:
        return link
    for item in entry.get("links") or []:
        if item.get("rel", "alternate") == "alternate" and item.get("href"):
            return item["href"]
    guid = entry.get("id")
    if guid and entry.get("guidislink"):
        return guid
    return None


def normalize_entry(
    entry: Any, *, now: datetime, base_url: str | None = None, language_hint: str | None = None
) -> Entry | None:
    """One feedparser entry -> Entry; None when it carries nothing to store (no title, text or link)."""
    title = _detail_text(entry, "title")
    summary = _summary(entry)
    source = entry.get("source") or {}
    source_title = plain_text(source.get("title") if hasattr(source, "get") else None) or None
    if source_title and title.endswith(f" - {source_title}"):
        # News aggregators append the publisher ("... - Reuters"): keep the headline itself.
        title = title[: -len(source_title) - 3].rstrip()
    if title and summary.startswith(title) and len(summary) - len(title) <= len(source_title or "") + 3:
        summary = ""  # the aggregator's description only repeats the headline (and publisher)
    title = _truncate(title, TITLE_MAX)
    summary = _truncate(summary, SUMMARY_MAX)
    url = canonical_url(_entry_link(entry), base_url)
    guid = plain_text(entry.get("id")) or None
    if not title and not summary and not url:
        return None
    if not title:
        title = _truncate(summary, 160) if summary else (url or "")
    author = plain_text(entry.get("author")) or None
    language = detect_language(f"{title}. {summary}", hint=language_hint)
    return Entry(
        title=title,
        summary=summary,
        url=url,
        guid=guid[:1000] if guid else None,
        author=author[:500] if author else None,
        source=source_title[:300] if source_title else None,
        language=language,
        published_at=entry_date(entry, now),
        content_hash=content_hash(title, summary),
    )
