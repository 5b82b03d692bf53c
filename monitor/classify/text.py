"""Text preparation shared by training and inference, so the model sees the same kind of text in both.

`clean_text` removes what carries no sentiment (URLs, $TICKER cashtags, HTML remnants, zero-width
characters); `split_sentences` cuts long text into sentences for chunked scoring and per-topic sentiment.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator, Sequence

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_CASHTAG_RE = re.compile(r"(?<![\w$])\$[A-Za-z][A-Za-z0-9._-]{0,9}\b")
_TAG_RE = re.compile(r"<[^>\n]{0,500}>")
_INVISIBLE_RE = re.compile(r"[\u200b-\u200f\u2028\u2029\u2060-\u2064\ufeff\u00ad]")
_SPACE_RE = re.compile(r"\s+")
_LEADING_PUNCT_RE = re.compile(r"^[\s\-–—:;,|/·•]+")
# Sentence ends: Latin .!? followed by space, CJK 。！？ (and full-width ；), line breaks.
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘(\[A-Z0-9\u4e00-\u9fff])|(?<=[。！？；!?])|\n+")


def clean_text(text: str) -> str:
    """Normalise one text for the sentiment model: no URLs, cashtags, tags or invisible characters."""
    if not text:
        return ""
    text = html.unescape(text).replace("…", " ")
    text = _TAG_RE.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE_RE.sub("", text)
    text = _URL_RE.sub(" ", text)
    text = _CASHTAG_RE.sub(" ", text)
    text = _SPACE_RE.sub(" ", text).strip()
    text = _LEADING_PUNCT_RE.sub("", text)
    return text


_ABBREVIATION_RE = re.compile(
    r"(?:^|[\s(\[])(?:[A-Z]|[A-Z]\.[A-Z]|Inc|Corp|Co|Ltd|Mr|Mrs|Ms|Dr|St|No|vs|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept"
    r"|Oct|Nov|Dec)\.$"
)
_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def split_sentences(text: str) -> list[str]:
    """Split on sentence ends (Latin and CJK) and line breaks; empty pieces are dropped.

    Chinese text goes through `monitor.classify.zh.split_sentences_zh` (quotes stay with their sentence);
    a Latin full stop after an abbreviation ("U.S.", "Inc.", "Jan.") does not end a sentence.
    """
    if not text:
        return []
    if _HAN_RE.search(text):
        from monitor.classify.zh import split_sentences_zh

        return split_sentences_zh(text)
    out: list[str] = []
    for piece in (piece.strip() for piece in _SENTENCE_RE.split(text)):
        if not piece:
            continue
        if out and _ABBREVIATION_RE.search(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length: less compute wasted on padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
