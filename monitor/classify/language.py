"""Language of a text, for routing it to the right sentiment model.

Script first (Han, kana, hangul are unambiguous and fast); langdetect only for long Latin-script text,
where it is reliable. Short Latin headlines default to English: langdetect guesses wildly on them.
"""

from __future__ import annotations

import re

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LETTER = re.compile(r"[^\W\d_]")
_MIN_DETECT_CHARS = 60
_WORD = re.compile(r"[a-z']+")
# Words common in English headlines and absent from (or rare in) other Latin-script languages: one settles
# it without langdetect, which costs about a millisecond per text (as much as scoring it) and misreads
# short English headlines as Dutch or Spanish now and then.
_ENGLISH = frozenset(
    {
        "the",
        "of",
        "and",
        "to",
        "for",
        "with",
        "from",
        "after",
        "says",
        "its",
        "this",
        "that",
        "than",
        "amid",
        "into",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "their",
        "they",
        "shares",
        "stock",
        "stocks",
        "market",
        "sales",
        "earnings",
        "revenue",
        "analyst",
        "analysts",
        "price",
        "target",
        "upgrade",
        "downgrade",
    }
)


def base_language(code: str | None) -> str | None:
    """ "zh-TW" -> "zh", "EN_us" -> "en"."""
    if not code:
        return None
    return re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0] or None


def detect_language(text: str) -> str:
    """An ISO 639-1 code; "en" when unsure."""
    letters = _LETTER.findall(text)
    if not letters:
        return "en"
    total = len(letters)
    if len(_KANA.findall(text)) / total > 0.05:
        return "ja"
    if len(_HANGUL.findall(text)) / total > 0.2:
        return "ko"
    if len(_HAN.findall(text)) / total > 0.2:
        return "zh"
    if len(text) < _MIN_DETECT_CHARS:
        return "en"
    if not _ENGLISH.isdisjoint(_WORD.findall(text.lower())):
        return "en"
    try:
        from langdetect import DetectorFactory, detect_langs

        DetectorFactory.seed = 0
        best = detect_langs(text)[0]
    except Exception:  # noqa: BLE001 - langdetect raises on texts without features; English is the fallback
        return "en"
    return base_language(best.lang) or "en" if best.prob >= 0.9 else "en"
