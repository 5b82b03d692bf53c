"""Topic assignment: keyword/alias matches plus embedding similarity to each topic's description and examples.

Keywords match on word boundaries in Latin script (with plural/possessive endings: "TPUs", "Nvidia's") and as
substrings in CJK script, where words are not separated by spaces. Similarity uses the packaged
all-MiniLM-L6-v2 sentence encoder (mean pooling, L2-normalised) for English text, the language it was
trained on; text that the classifier routes to the multilingual model is compared, when that model's
encoder is given, with multilingual-e5-small (the encoder already loaded for its sentiment) against the
topics' description and examples embedded by the same encoder. Both become one relevance in [0, 1]; a topic
is assigned when relevance >= `topic_threshold`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.classify.text import length_batches
from monitor.config import TopicConfig

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# Boundaries are Latin letters and digits only, so "英伟达Nvidia股价" still matches "nvidia".
_LATIN_BEFORE = r"(?<![0-9A-Za-z\u00c0-\u024f])"
_LATIN_AFTER = r"(?:s|es|'s|’s|s'|’)?(?![0-9A-Za-z\u00c0-\u024f])"
SIMILARITY_LANGUAGES = frozenset({"en"})
# multilingual-e5-small cosines sit high for any pair of news headlines. Measured (bf16, "query: " prefix) on
# Chinese headlines against config/monitor.yaml's English descriptions/examples: unrelated news (food prices,
# weather, sport, rates) 0.73-0.81, mean 0.77; headlines about a topic without its keywords 0.82-0.89.
# Relevance is 0 at MULTILINGUAL_SIMILARITY_FLOOR and 0.5 at `model.multilingual_similarity_threshold`.
MULTILINGUAL_SIMILARITY_FLOOR = 0.75


@dataclass(frozen=True)
class TopicMatch:
    name: str
    relevance: float
    keywords: tuple[str, ...] = ()
    similarity: float | None = None


@dataclass
class _Topic:
    name: str
    patterns: list[tuple[str, re.Pattern[str] | None]]  # (keyword, regex or None for a CJK substring)
    embeddings: np.ndarray | None = field(default=None, repr=False)
    multilingual_embeddings: np.ndarray | None = field(default=None, repr=False)


def _compile(keyword: str) -> tuple[str, re.Pattern[str] | None]:
    keyword = keyword.strip()
    if _CJK.search(keyword):
        return keyword.casefold(), None
    words = [re.escape(word) for word in keyword.split()]
    return keyword, re.compile(_LATIN_BEFORE + r"[\s\-]+".join(words) + _LATIN_AFTER, re.IGNORECASE)


class SentenceEncoder:
    """The packaged all-MiniLM-L6-v2 as a sentence encoder (mean pooling over tokens, unit vectors)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, max_length: int = 128, batch_size: int = 32, precision: str = "auto") -> None:
        from transformers import AutoModel, AutoTokenizer

        from monitor.classify.hf import resolve_precision
        from monitor.classify.shipped import base_model_path

        self.precision = resolve_precision(precision)

        path = str(base_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            for index in length_batches([len(t) for t in texts], self.batch_size):
                batch = self.tokenizer(
                    [texts[i] for i in index],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[index] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


def similarity_relevance(similarity: float, threshold: float, floor: float = 0.0) -> float:
    """Map cosine similarity to relevance: 0 at <= floor, 0.5 at the threshold, 1 at 1 (piecewise linear)."""
    if similarity <= floor:
        return 0.0
    if similarity < threshold:
        return 0.5 * (similarity - floor) / (threshold - floor) if threshold > floor else 0.5
    return min(1.0, 0.5 + 0.5 * (similarity - threshold) / max(1e-9, 1.0 - threshold))


def keyword_relevance(hits: int, in_title: bool) -> float:
    """A named topic is relevant; more mentions and a mention in the headline make it more so."""
    if hits <= 0:
        return 0.0
    return round(min(1.0, 0.7 + 0.1 * min(hits - 1, 2) + (0.1 if in_title else 0.0)), 4)


class TopicMatcher:
    """Multi-label topic relevance for texts; see the module docstring."""

    def __init__(
        self,
        topics: Mapping[str, TopicConfig],
        encoder: Any | None = None,
        *,
        topic_threshold: float = 0.5,
        similarity_threshold: float = 0.45,
        multilingual_encoder: Any | None = None,
        multilingual_similarity_threshold: float = 0.83,
    ) -> None:
        self.topic_threshold = topic_threshold
        self.similarity_threshold = similarity_threshold
        self.encoder = encoder
        self.multilingual_encoder = multilingual_encoder
        self.multilingual_similarity_threshold = multilingual_similarity_threshold
        self.topics: list[_Topic] = []
        # Rivalry is mutual: naming it on either topic is enough.
        self.rivals: dict[str, set[str]] = {name: set() for name in topics}
        for name, config in topics.items():
            for rival in config.rivals:
                if rival in self.rivals and rival != name:
                    self.rivals[name].add(rival)
                    self.rivals[rival].add(name)
        for name, config in topics.items():
            patterns = [_compile(keyword) for keyword in config.keywords if keyword.strip()]
            topic = _Topic(name=name, patterns=patterns)
            references = [text for text in [config.description, *config.examples] if text and text.strip()]
            if encoder is not None and references:
                topic.embeddings = encoder.encode(references)
            if multilingual_encoder is not None and references:
                topic.multilingual_embeddings = multilingual_encoder.encode(references)
            self.topics.append(topic)

    @property
    def names(self) -> list[str]:
        return [topic.name for topic in self.topics]

    def keyword_hits(self, text: str, topic: str) -> list[str]:
        """Keywords of `topic` found in `text` (one entry per occurrence)."""
        for candidate in self.topics:
            if candidate.name == topic:
                return self._hits(candidate, text)
        raise KeyError(f"unknown topic {topic!r}")

    @staticmethod
    def _hits(topic: _Topic, text: str) -> list[str]:
        """One keyword per distinct place it occurs; overlapping aliases ("tpu", "tpus") count once."""
        spans: list[tuple[int, int, str]] = []
        folded = text.casefold()
        for keyword, pattern in topic.patterns:
            if pattern is None:
                start = folded.find(keyword)
                while start >= 0:
                    spans.append((start, start + len(keyword), keyword))
                    start = folded.find(keyword, start + len(keyword))
            else:
                spans.extend((m.start(), m.end(), keyword) for m in pattern.finditer(text))
        spans.sort(key=lambda span: (span[0], -(span[1] - span[0])))
        found: list[str] = []
        end = -1
        for start, stop, keyword in spans:
            if start >= end:
                found.append(keyword)
                end = stop
        return found

    def mentions(self, text: str) -> set[str]:
        """Topics named (by keyword) in a piece of text."""
        return {topic.name for topic in self.topics if self._hits(topic, text)}

    def match(
        self,
        texts: Sequence[str],
        languages: Sequence[str | None] | None = None,
        titles: Sequence[str] | None = None,
        multilingual: Sequence[bool] | None = None,
    ) -> list[list[TopicMatch]]:
        """Per text, the topics with relevance >= topic_threshold, most relevant first.

        `multilingual[i]` marks a text the classifier routes to the multilingual model: its similarity comes
        from the multilingual encoder (when given), whatever its language; other texts use the English
        encoder when their language is English (or unknown).
        """
        languages = list(languages) if languages is not None else [None] * len(texts)
        routed = list(multilingual) if multilingual is not None else [False] * len(texts)
        if len(languages) != len(texts) or len(routed) != len(texts):
            raise ValueError("languages and multilingual must have one entry per text")
        use_e5 = self.multilingual_encoder is not None
        similarities: dict[int, np.ndarray] = {}  # English encoder
        e5_similarities: dict[int, np.ndarray] = {}  # multilingual encoder
        if use_e5 and any(topic.multilingual_embeddings is not None for topic in self.topics):
            wanted = [i for i, text in enumerate(texts) if text and routed[i]]
            if wanted:
                vectors = self.multilingual_encoder.encode([texts[i] for i in wanted])
                e5_similarities.update(zip(wanted, vectors, strict=True))
        if self.encoder is not None and any(topic.embeddings is not None for topic in self.topics):
            wanted = [
                i
                for i, text in enumerate(texts)
                if text and not (use_e5 and routed[i]) and (languages[i] or "en") in SIMILARITY_LANGUAGES
            ]
            if wanted:
                vectors = self.encoder.encode([texts[i] for i in wanted])
                for row, i in enumerate(wanted):
                    similarities[i] = vectors[row]
        results: list[list[TopicMatch]] = []
        for i, text in enumerate(texts):
            title = titles[i] if titles is not None else None
            matches = []
            for topic in self.topics:
                hits = self._hits(topic, text)
                in_title = bool(title and self._hits(topic, title))
                relevance = keyword_relevance(len(hits), in_title)
                similarity = None
                if i in similarities and topic.embeddings is not None:
                    similarity = float(np.max(topic.embeddings @ similarities[i]))
                    relevance = max(relevance, similarity_relevance(similarity, self.similarity_threshold))
                elif i in e5_similarities and topic.multilingual_embeddings is not None:
                    similarity = float(np.max(topic.multilingual_embeddings @ e5_similarities[i]))
                    mapped = similarity_relevance(
                        similarity, self.multilingual_similarity_threshold, MULTILINGUAL_SIMILARITY_FLOOR
                    )
                    relevance = max(relevance, mapped)
                if relevance >= self.topic_threshold and relevance > 0:
                    matches.append(
                        TopicMatch(
                            topic.name,
                            round(relevance, 4),
                            tuple(dict.fromkeys(hits)),
                            None if similarity is None else round(similarity, 4),
                        )
                    )
            matches.sort(key=lambda match: -match.relevance)
            results.append(matches)
        return results
