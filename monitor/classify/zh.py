"""Chinese text helpers: sentence segmentation that keeps quotes whole, and script/CJK detection.

Chinese sentences end in 。！？ (or ASCII !?, full-width ；) and often close inside a quotation:
`他说：“需求强劲。”股价随后上涨。` is two sentences, and the closing `”` belongs to the first one.
Runs of end marks (`！！！`, `？！`) end one sentence, not several empty ones; `……` is a pause, not an end.

Script detection needs no dictionary: GB2312 holds Simplified characters, Big5 holds Traditional
ones, so a Han character that encodes in only one of the two tells the script.
"""

from __future__ import annotations

import re

# A sentence: anything up to a run of end marks, then any closing quotes/brackets that follow.
_END = "。！？!?；"
_CLOSERS = "”’」』）)】》〉\"'"
_SENTENCE_RE = re.compile(rf"[^{_END}\n]*(?:[{_END}]+[{_CLOSERS}]*|\n+|$)")
# Latin full stops end a sentence only before a space and a capital, digit, quote or Han character.
_LATIN_STOP_RE = re.compile(r"(?<=[.])\s+(?=[\"“A-Z0-9\u4e00-\u9fff])")
_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL_RE = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")


def split_sentences_zh(text: str) -> list[str]:
    """Split Chinese (or mixed) text into sentences; closing quotes stay with their sentence."""
    if not text:
        return []
    pieces = (
        part.strip() for match in _SENTENCE_RE.finditer(text) for part in _LATIN_STOP_RE.split(match.group(0))
    )
    out: list[str] = []
    for piece in pieces:
        if not piece:
            continue
        if out and not _has_content(piece):
            out[-1] += piece  # stray punctuation (e.g. a quote after a line break) joins the sentence before
        else:
            out.append(piece)
    return out


def _has_content(piece: str) -> bool:
    return any(ch.isalnum() for ch in piece)


def han_ratio(text: str) -> float:
    """Share of non-space characters that are Han (CJK ideographs)."""
    chars = [ch for ch in text or "" if not ch.isspace()]
    if not chars:
        return 0.0
    return sum(1 for ch in chars if _HAN_RE.match(ch)) / len(chars)


def is_chinese(text: str, threshold: float = 0.2) -> bool:
    """True when Han characters make up at least `threshold` of the text and it is not Japanese/Korean."""
    if not text or _KANA_HANGUL_RE.search(text):
        return False
    return han_ratio(text) >= threshold


def _encodes(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def chinese_script(text: str) -> str | None:
    """'hans' (Simplified), 'hant' (Traditional), or None when the text does not tell (no Han, or a tie)."""
    simplified = traditional = 0
    for ch in text or "":
        if not _HAN_RE.match(ch):
            continue
        in_gb, in_big5 = _encodes(ch, "gb2312"), _encodes(ch, "big5")
        if in_gb and not in_big5:
            simplified += 1
        elif in_big5 and not in_gb:
            traditional += 1
    if simplified == traditional:
        return None
    return "hans" if simplified > traditional else "hant"
