"""What the clusterer compares: a headline's words without the publisher's decoration, its numbers, and
whether a summary says anything of its own.

Latin-script text is compared by words and word pairs; Chinese by characters and character pairs (it does
not separate words). Everything is case-folded and NFKC-normalised, so full-width digits and Latin letters in
Chinese headlines compare equal to their ASCII forms.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

_CJK_CHAR = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK_CHAR}]|[0-9]+(?:[.,][0-9]+)*%?|[^\W\d_{_CJK_CHAR}]+(?:'[a-z]+)?")
_CJK = re.compile(rf"[{_CJK_CHAR}]")
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
# A publisher appended to the headline: "… - Reuters", "… | Yahoo Finance", "…（财联社）", "… — 鉅亨網".
_SUFFIX = re.compile(r"\s+(?:[-|–—·•]|::)\s+([^-|–—·•]{1,40})$|\s*[（(【\[]([^）)】\]]{1,16})[）)】\]]\s*$")
# Wire and aggregator decoration at the start: "UPDATE 2-", "BREAKING:", "【快讯】", "快讯：", "獨家｜".
_PREFIX = re.compile(
    r"^\s*(?:(?:update|corrected|refile|exclusive|breaking|analysis|factbox|wrapup)(?:\s*\d+)?\s*[-:|]\s*"
    r"|[【\[][^】\]]{1,10}[】\]]\s*|(?:快讯|快訊|独家|獨家|突发|突發|重磅)\s*[：:｜|]\s*)+",
    re.IGNORECASE,
)
# English words that say nothing about which event a headline reports.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "as",
        "at",
        "by",
        "with",
        "from",
        "after",
        "over",
        "amid",
        "into",
        "its",
        "it",
        "is",
        "are",
        "be",
        "was",
        "were",
        "this",
        "that",
        "than",
        "says",
        "said",
        "say",
        "report",
        "reports",
        "new",
    ]
)
# Summaries that feeds put under unrelated items.
_BOILERPLATE = re.compile(
    r"^(?:read more|continue reading|click here|full story|more\b|the post .* appeared first on|"
    r"点击查看|點擊查看|查看全文|阅读全文|閱讀全文|详情|詳情)",
    re.IGNORECASE,
)
MIN_WORDS = 3  # Latin content words a headline needs before its text may match another
MIN_CJK_CHARS = 5


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold().strip()


def strip_decoration(title: str) -> str:
    """The headline without a trailing publisher or a leading wire tag (applied until nothing changes)."""
    text = unicodedata.normalize("NFKC", title or "").strip()
    for _ in range(3):
        stripped = _PREFIX.sub("", text)
        match = _SUFFIX.search(stripped)
        if match and len(stripped[: match.start()].strip()) >= 12:
            stripped = stripped[: match.start()].rstrip()
        if stripped == text:
            break
        text = stripped
    return text


def tokens(text: str) -> list[str]:
    """Content tokens: Latin words (stopwords and plural 's' dropped), numbers, single CJK characters."""
    out = []
    for token in _TOKEN.findall(normalise(text)):
        if token in _STOPWORDS:
            continue
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss") and token[0].isascii():
            token = token[:-1]
        out.append(token)
    return out


def shingles(words: list[str]) -> set[str]:
    """Tokens and adjacent pairs: pairs keep word order, so a reworded headline shares fewer of them."""
    out = set(words)
    out.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    return out


def numbers(text: str) -> frozenset[str]:
    """Figures in the text ("5%", "140", "3.5"): two reports of one event rarely disagree on all of them."""
    return frozenset(n.replace(",", "") for n in _NUMBER.findall(normalise(text)))


_NAME = re.compile(r"\b[A-Z][A-Za-z0-9&.\-]*")
# Capitalised words that name no company: headline style, months, places that do not tell events apart.
_NOT_NAMES = frozenset(
    [
        "ai",
        "a",
        "an",
        "the",
        "update",
        "exclusive",
        "breaking",
        "analysis",
        "us",
        "u.s.",
        "china",
        "chinese",
        "wall",
        "street",
        "stocks",
        "shares",
        "ceo",
        "cfo",
        "q1",
        "q2",
        "q3",
        "q4",
        "h1",
        "h2",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)


def names(headline: str) -> tuple[str, ...]:
    """Capitalised Latin words of a headline, case-folded, in order ("Broadcom", "AMD", "Meta")."""
    found = [m.group(0).casefold().rstrip(".") for m in _NAME.finditer(headline)]
    return tuple(dict.fromkeys(n for n in found if n not in _NOT_NAMES and n not in _STOPWORDS))


def subjects_conflict(a: Features, b: Features) -> bool:
    """Each headline leads with a name the other never mentions: "Broadcom forecasts revenue above
    estimates" and "AMD forecasts revenue above estimates" are two events, however alike the words."""
    if not a.names or not b.names:
        return False
    return a.names[0] not in b.names and b.names[0] not in a.names


def enough_text(words: list[str]) -> bool:
    """False for empty and one- or two-word headlines ("Nvidia", "Update", "快讯"): they match nothing."""
    cjk = sum(1 for w in words if _CJK.fullmatch(w))
    return cjk >= MIN_CJK_CHARS or len(words) - cjk >= MIN_WORDS


def substantive_summary(summary: str, title: str) -> str:
    """The summary, unless it is boilerplate, too short to tell items apart, or only repeats the headline."""
    text = " ".join((summary or "").split())
    if not text or _BOILERPLATE.match(text):
        return ""
    words = tokens(text)
    if len(words) < 8 or normalise(text).startswith(normalise(title)[:40]) and len(text) < len(title) + 40:
        return ""
    return text


def meaning_text(title: str, summary: str, limit: int = 200) -> str:
    """What the meaning vector reads: the headline and the start of a substantive summary (the facts a
    translation shares), without a publisher's decoration."""
    headline = strip_decoration(title)
    summary = substantive_summary(summary, headline)[:limit]
    return f"{headline}. {summary}" if summary else headline


def source_of(source: str | None, url: str | None, feed: str | None) -> str:
    """The publisher: the name the feed gives, else the link's domain, else the feed's name."""
    if source and source.strip():
        return source.strip().casefold()[:300]
    if url:
        host = (urlsplit(url).hostname or "").casefold()
        if host:
            return host.removeprefix("www.")[:300]
    return (feed or "").casefold()[:300]


@dataclass(frozen=True, slots=True)
class Features:
    """What one article brings to the comparison."""

    title_shingles: frozenset[str]
    summary_shingles: frozenset[str]
    numbers: frozenset[str]
    enough: bool  # a headline with enough words to be compared at all
    script: str  # "cjk" or "latin": a pair of different scripts can only match by meaning
    anchors: frozenset[str] = frozenset()  # Latin names and figures: what a translation keeps as written
    names: tuple[str, ...] = ()  # capitalised Latin words in headline order: who the news is about

    @classmethod
    def of(cls, title: str, summary: str) -> Features:
        headline = strip_decoration(title)
        words = tokens(headline)
        own_summary = substantive_summary(summary, headline)
        cjk = sum(1 for w in words if _CJK.fullmatch(w))
        return cls(
            title_shingles=frozenset(shingles(words)),
            summary_shingles=frozenset(shingles(tokens(own_summary)[:60])) if own_summary else frozenset(),
            numbers=numbers(headline),
            enough=enough_text(words),
            script="cjk" if cjk * 2 >= max(1, len(words)) else "latin",
            anchors=frozenset(w for w in words if not _CJK.fullmatch(w) and (len(w) > 2 or w.isdigit())),
            names=names(headline),
        )

    @property
    def all_shingles(self) -> frozenset[str]:
        return self.title_shingles | self.summary_shingles


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def numbers_conflict(a: Features, b: Features) -> bool:
    """Both headlines give figures and share none: "rises 2.5%" on Monday is not "rises 4.1%" on Thursday."""
    return bool(a.numbers) and bool(b.numbers) and not (a.numbers & b.numbers)
