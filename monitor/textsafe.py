"""Bidirectional control characters: one definition for collection and for every place text is shown.

U+202A-U+202E (LRE, RLE, PDF, LRO, RLO) and U+2066-U+2069 (LRI, RLI, FSI, PDI) change the *display order*
of the text after them. A feed title ending in an unterminated RLO makes the "+0.01" printed beside it read
"10.0+" in a table, a Slack message or the dashboard (and can disguise a URL or a name). No headline needs
them: right-to-left scripts are ordered by their letters, which stay. Collection strips them
(monitor/collect/normalize.py); the renderers strip them again for text stored before that, and for text from
the config. The dashboard (monitor/api/static/app.js) carries the same character ranges in JavaScript.
"""

from __future__ import annotations

import re

# Character-class body, also used inside normalize's wider "unsafe characters" class.
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def strip_bidi(text: str) -> str:
    """`text` without bidi embedding, override and isolate controls (the letters themselves are kept)."""
    return _BIDI.sub("", text)
