"""Topic aliases: where a configured topic is named in a text, in English, Simplified or Traditional Chinese.

Aliases (a topic's `keywords`) are the backbone of topic assignment: they match on word boundaries in Latin
script (with plural/possessive endings: "TPUs", "Nvidia's") and as substrings in CJK script, where words are
not separated by spaces. Whether a text that names a topic is really *about* it ("bubble tea" is not AI-bubble
talk), and whether a text that names none of a topic's aliases is about it all the same, is the target-aware
model's call (`monitor.classify.target`); the classifier combines the two (`Classifier._assign`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.classify.target import TopicSpec
from monitor.config import TopicConfig


@dataclass(frozen=True)
class TopicMatch:
    name: str
    relevance: float
    keywords: tuple[str, ...] = ()


def keyword_relevance(hits: int, in_title: bool) -> float:
    """A named topic is relevant; more mentions and a mention in the headline make it more so (used when the
    model cannot judge relevance: a generic sentiment model from the hub)."""
    if hits <= 0:
        return 0.0
    return round(min(1.0, 0.7 + 0.1 * min(hits - 1, 2) + (0.1 if in_title else 0.0)), 4)


class TopicMatcher:
    """The configured topics as `TopicSpec`s, and where each is named in a text."""

    def __init__(self, topics: Mapping[str, TopicConfig]) -> None:
        self.specs: list[TopicSpec] = [
            TopicSpec(name, tuple(k.strip() for k in config.keywords if k.strip()), config.description)
            for name, config in topics.items()
        ]

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def keyword_hits(self, text: str, topic: str) -> list[str]:
        """Aliases of `topic` in `text`, one entry per place ("TPU" and "TPUs" overlapping count once)."""
        for spec in self.specs:
            if spec.name == topic:
                return [alias for _start, _end, alias in spec.spans(text)]
        raise KeyError(f"unknown topic {topic!r}")

    def mentions(self, text: str) -> set[str]:
        """Topics named (by alias) in a piece of text."""
        return {spec.name for spec in self.specs if spec.spans(text)}

    def match(self, text: str, title: str | None = None) -> list[TopicMatch]:
        """Topics named in `text`, with a keyword relevance, most relevant first."""
        matches = []
        for spec in self.specs:
            hits = [alias for _s, _e, alias in spec.spans(text)]
            if hits:
                in_title = bool(title and spec.spans(title))
                matches.append(
                    TopicMatch(spec.name, keyword_relevance(len(hits), in_title), tuple(dict.fromkeys(hits)))
                )
        matches.sort(key=lambda match: -match.relevance)
        return matches
