"""The classifier stage: sentiment and topics for texts and collected articles, in batches.

One `Classifier` per process holds the loaded models. Every text is cleaned, routed by language to a
backend (the only routing decision lives in `_route`), cut into sentence chunks that fit the model, and
scored; chunk probabilities are averaged (weighted by length). Topics come from `TopicMatcher`; where an
article names several topics, each topic's sentiment comes from the sentences (or clauses) naming it, and a
neutral clause beside a rival topic's clearly polar one takes its mirror image (`TopicConfig.rivals`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from monitor import metrics
from monitor.classify.backend import LABELS, NEGATIVE, POSITIVE, ModelError, SentimentBackend
from monitor.classify.language import base_language, detect_language
from monitor.classify.text import clean_text, split_sentences
from monitor.classify.topics import TopicMatch, TopicMatcher
from monitor.config import ModelConfig, Settings, TopicConfig
from monitor.events import ArticleCollected, ArticleScored, TopicScore

log = logging.getLogger(__name__)

MAX_CHARS = 20_000  # of cleaned text per input; the rest of a 100 KB page adds little but cost
MAX_CHUNKS = 16
MAIN, MULTILINGUAL = "main", "multilingual"
DEFAULT_MULTILINGUAL = "default-multilingual"

_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# Clause boundaries used to separate two topics named in one sentence ("Nvidia slides as Google's TPUs win").
_CLAUSE_RE = re.compile(
    r"\s*(?:[,;，；]|\s[-–—|]\s|[–—]"
    r"|\b(?:as|while|but|whereas|although|though|after|amid|despite|because|yet)\b"
    r"|但|而|却)\s*",
    re.IGNORECASE,
)


RIVAL_POLAR = 0.6  # a rival's clause this clearly negative/positive informs a neutral clause beside it


@dataclass(frozen=True, slots=True)
class _Unit:
    """One piece of text to score: an article chunk (topic None) or a topic's sentence/clause."""

    text_index: int
    route: str
    text: str
    weight: float
    topic: str | None = None
    group: int | None = None  # clauses cut from one sentence share a group


@dataclass(frozen=True)
class TopicResult:
    name: str
    relevance: float
    sentiment: float
    label: str
    keywords: tuple[str, ...] = ()
    similarity: float | None = None
    basis: str = "article"  # "article", "mentions" or "rival": where the topic's sentiment came from


@dataclass(frozen=True)
class ScoredText:
    text: str
    label: str
    score: float  # P(positive) - P(negative), in [-1, 1]
    confidence: float  # probability of the chosen label
    probabilities: tuple[float, float, float]  # negative, neutral, positive
    model_name: str
    model_version: str
    language: str | None
    chunks: int
    topics: tuple[TopicResult, ...] = field(default_factory=tuple)
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["probabilities"] = dict(zip(LABELS, self.probabilities, strict=True))
        data["model"] = {"name": self.model_name, "version": self.model_version}
        del data["model_name"], data["model_version"]
        for topic in data["topics"]:
            topic["keywords"] = list(topic["keywords"])
        return data


def _weighted_length(text: str) -> float:
    """Rough token count: a CJK character is about one token, Latin text about 3.3 characters per token."""
    cjk = len(_CJK_CHAR.findall(text))
    return cjk + (len(text) - cjk) * 0.3


def chunk_text(text: str, max_tokens: int) -> list[str]:
    """Group sentences into chunks that fit the model; over-long sentences are cut."""
    budget = max(8, max_tokens - 2)
    pieces: list[str] = []
    for sentence in split_sentences(text) or [text]:
        while _weighted_length(sentence) > budget:
            cut = max(1, int(len(sentence) * budget / _weighted_length(sentence)))
            space = sentence.rfind(" ", cut // 2, cut)
            cut = space if space > 0 else cut
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and _weighted_length(chunks[-1]) + _weighted_length(piece) + 1 <= budget:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def label_of(probabilities: np.ndarray) -> str:
    return LABELS[int(np.argmax(probabilities))]


def _score(probabilities: np.ndarray) -> float:
    return float(np.clip(probabilities[POSITIVE] - probabilities[NEGATIVE], -1.0, 1.0))


def article_text(title: str, summary: str) -> str:
    """Headline, then the summary unless it only repeats the headline (common in news feeds)."""
    title, summary = (title or "").strip(), (summary or "").strip()
    if not title or not summary:
        return title or summary
    if summary.casefold().startswith(title.casefold()) and len(summary) < len(title) + 60:
        return title
    return f"{title}\n{summary}"


class Classifier:
    """Loaded models + topic matcher; use `from_settings` once per process."""

    def __init__(
        self,
        main: SentimentBackend,
        *,
        multilingual: SentimentBackend | None = None,
        route_languages: Sequence[str] = ("en",),
        topics: TopicMatcher | None = None,
        max_length: int = 128,
        batch_size: int = 32,
    ) -> None:
        self.backends: dict[str, SentimentBackend] = {MAIN: main}
        if multilingual is not None:
            self.backends[MULTILINGUAL] = multilingual
        self.route_languages = {base_language(code) for code in route_languages} - {None}
        self.topics = topics
        self.max_length = max_length
        self.batch_size = batch_size

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings) -> Classifier:
        return cls.from_config(settings.model, settings.topics)

    @classmethod
    def from_config(cls, config: ModelConfig, topics: dict[str, TopicConfig] | None = None) -> Classifier:
        """Load the configured models (ModelError naming the model when one cannot be loaded)."""
        from monitor.classify.hf import configure_threads

        started = time.monotonic()
        threads = configure_threads(config.threads)
        main = load_sentiment_backend(config.sentiment, config)
        multilingual = None
        if config.multilingual and config.multilingual != config.sentiment:
            multilingual = _load_multilingual(config)
        matcher = None
        if topics:
            from monitor.classify.topics import SentenceEncoder

            matcher = TopicMatcher(
                topics,
                SentenceEncoder(precision=config.precision),
                topic_threshold=config.topic_threshold,
                similarity_threshold=config.similarity_threshold,
                # The default multilingual backend's encoder, already loaded: topics for the text it scores.
                multilingual_encoder=getattr(multilingual, "encoder", None),
                multilingual_similarity_threshold=config.multilingual_similarity_threshold,
            )
        classifier = cls(
            main,
            multilingual=multilingual,
            route_languages=config.route_languages,
            topics=matcher,
            max_length=config.max_length,
            batch_size=config.batch_size,
        )
        log.info(
            "classifier ready",
            extra={
                **classifier.describe(),
                "threads": threads,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        return classifier

    @property
    def ready(self) -> bool:
        return MAIN in self.backends

    def describe(self) -> dict[str, Any]:
        return {
            "models": {key: {"name": b.name, "version": b.version} for key, b in self.backends.items()},
            "route_languages": sorted(self.route_languages),
            "topics": self.topics.names if self.topics else [],
        }

    # -- routing: the one place that decides which model scores a text --------------------------------------
    def _route(self, language: str | None) -> str:
        if language is None or language in self.route_languages or MULTILINGUAL not in self.backends:
            return MAIN
        return MULTILINGUAL

    # -- scoring --------------------------------------------------------------------------------------------
    def score_texts(
        self,
        texts: Sequence[str],
        languages: Sequence[str | None] | None = None,
        titles: Sequence[str] | None = None,
    ) -> list[ScoredText]:
        """Score texts in batches. Empty text gets a neutral score with confidence 0."""
        languages = list(languages) if languages is not None else [None] * len(texts)
        if len(languages) != len(texts):
            raise ValueError("languages must have one entry per text")
        prepared: list[tuple[str, str | None, bool]] = []
        for raw, language in zip(texts, languages, strict=True):
            if not isinstance(raw, str):
                raise TypeError(f"texts must be strings, got {type(raw).__name__}")
            cleaned = clean_text(raw) or " ".join(raw.split())
            truncated = len(cleaned) > MAX_CHARS
            cleaned = cleaned[:MAX_CHARS]
            lang = base_language(language) or (detect_language(cleaned) if cleaned else None)
            prepared.append((cleaned, lang, truncated))

        matches: list[list[TopicMatch]] = [[] for _ in texts]
        if self.topics is not None:
            matches = self.topics.match(
                [p[0] for p in prepared],
                [p[1] for p in prepared],
                titles,
                multilingual=[self._route(p[1]) == MULTILINGUAL for p in prepared],
            )

        units: list[_Unit] = []
        chunk_counts = [0] * len(texts)
        for i, (cleaned, lang, _truncated) in enumerate(prepared):
            if not cleaned:
                continue
            route = self._route(lang)
            chunks = chunk_text(cleaned, self.max_length)
            if len(chunks) > MAX_CHUNKS:
                log.info(
                    "long text: scoring its first chunks only",
                    extra={"chunks": len(chunks), "scored": MAX_CHUNKS},
                )
                chunks = chunks[:MAX_CHUNKS]
            chunk_counts[i] = len(chunks)
            units.extend(_Unit(i, route, chunk, max(1.0, _weighted_length(chunk))) for chunk in chunks)
            if self.topics is not None and len(matches[i]) > 1:
                names = [match.name for match in matches[i]]
                units.extend(
                    _Unit(i, route, segment, 1.0, topic, group)
                    for topic, segment, group in self._topic_segments(cleaned, names)
                )

        probabilities = self._predict(units)
        by_text: dict[int, list[tuple[_Unit, np.ndarray]]] = {}
        for unit, probs in zip(units, probabilities, strict=True):
            by_text.setdefault(unit.text_index, []).append((unit, probs))
        results: list[ScoredText] = []
        for i, (cleaned, lang, truncated) in enumerate(prepared):
            scored = by_text.get(i, [])
            own = [(probs, unit.weight) for unit, probs in scored if unit.topic is None]
            backend = self.backends[self._route(lang)]
            if not own:
                article = np.array([0.0, 1.0, 0.0], dtype=np.float32)
                confidence = 0.0
            else:
                weights = np.array([w for _, w in own])
                article = (np.stack([p for p, _ in own]) * weights[:, None]).sum(0) / weights.sum()
                confidence = float(article.max())
            topic_results = []
            for match in matches[i]:
                probs, basis = self._topic_probabilities(match.name, scored)
                probs = article if probs is None else probs
                topic_results.append(
                    TopicResult(
                        name=match.name,
                        relevance=match.relevance,
                        sentiment=round(_score(probs), 4),
                        label=label_of(probs),
                        keywords=match.keywords,
                        similarity=match.similarity,
                        basis=basis,
                    )
                )
            results.append(
                ScoredText(
                    text=cleaned,
                    label=label_of(article),
                    score=round(_score(article), 4),
                    confidence=round(confidence, 4),
                    probabilities=tuple(round(float(x), 4) for x in article),  # type: ignore[arg-type]
                    model_name=backend.name,
                    model_version=backend.version,
                    language=lang,
                    chunks=chunk_counts[i],
                    topics=tuple(topic_results),
                    truncated=truncated,
                )
            )
        return results

    def _predict(self, units: list[_Unit]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.zeros(3, dtype=np.float32)] * len(units)
        for route, backend in self.backends.items():
            index = [k for k, unit in enumerate(units) if unit.route == route]
            for start in range(0, len(index), self.batch_size * 8):
                part = index[start : start + self.batch_size * 8]
                probs = np.asarray(backend.predict_proba([units[k].text for k in part]), dtype=np.float32)
                if probs.shape != (len(part), 3):
                    raise ModelError(
                        f"backend {backend.name!r} returned shape {probs.shape}, expected ({len(part)}, 3)"
                    )
                for row, k in enumerate(part):
                    out[k] = probs[row]
        return out

    def _topic_segments(self, text: str, names: list[str]) -> list[tuple[str, str, int | None]]:
        """(topic, segment, group) for each topic named in the text: the sentences that name it, or the
        clauses when one sentence names several topics (those clauses share a group number). Topics found
        only by similarity get none and use the article's score."""
        assert self.topics is not None
        wanted = set(names)
        segments: list[tuple[str, str, int | None]] = []
        for number, sentence in enumerate(split_sentences(text)):
            named = self.topics.mentions(sentence) & wanted
            if len(named) == 1:
                segments.append((next(iter(named)), sentence, None))
            elif named:
                clauses = _clauses(sentence)
                for name in sorted(named):
                    own = [c for c in clauses if self.topics.mentions(c) & wanted == {name}]
                    segments.extend((name, clause, number) for clause in own or [sentence])
        return segments

    def _topic_probabilities(
        self, topic: str, scored: list[tuple[_Unit, np.ndarray]]
    ) -> tuple[np.ndarray | None, str]:
        """A topic's probabilities from its own segments; a neutral clause next to a rival's clearly
        positive or negative one takes the mirror image, at half weight ("Nvidia slides as TPUs win")."""
        assert self.topics is not None
        rivals = self.topics.rivals.get(topic, set())
        mine = [(unit, probs) for unit, probs in scored if unit.topic == topic]
        if not mine:
            return None, "article"
        basis = "mentions"
        adjusted = []
        for unit, probs in mine:
            if unit.group is not None and rivals and label_of(probs) == "neutral":
                rival = [
                    p
                    for u, p in scored
                    if u.group == unit.group
                    and u.topic in rivals
                    and max(p[NEGATIVE], p[POSITIVE]) >= RIVAL_POLAR
                ]
                if rival:
                    mirrored = np.mean(rival, axis=0)[::-1]  # negative <-> positive
                    probs = 0.5 * probs + 0.5 * mirrored
                    basis = "rival"
            adjusted.append(probs)
        return np.mean(adjusted, axis=0), basis

    # -- pipeline -------------------------------------------------------------------------------------------
    def score_articles(self, target: Any, events: Sequence[ArticleCollected]) -> list[ArticleScored]:
        """Score collected articles, store scores and topic rows, return one ArticleScored per stored article.

        `target` is an Engine (committed here) or a Session (flushed; the caller commits). Articles whose
        row no longer exists are skipped with a warning.
        """
        from monitor.store import scores as store

        if not events:
            return []
        started = time.monotonic()
        texts = [article_text(e.title, e.summary) for e in events]
        results = self._score_tolerantly(
            texts, [e.language for e in events], [e.title for e in events], [e.article_id for e in events]
        )
        scored = [
            (event, result) for event, result in zip(events, results, strict=True) if result is not None
        ]
        rows = [store.ScoreRow.from_scored(event.article_id, result) for event, result in scored]
        saved = store.save_scores_to(target, rows)
        metrics.observe_scoring(time.monotonic() - started, len(saved))
        out = []
        for event, result in scored:
            if event.article_id not in saved:
                continue
            out.append(
                ArticleScored(
                    article_id=event.article_id,
                    label=result.label,
                    score=result.score,
                    confidence=result.confidence,
                    model=f"{result.model_name}@{result.model_version}",
                    topics=tuple(TopicScore(t.name, t.relevance, t.sentiment) for t in result.topics),
                )
            )
        return out

    def _score_tolerantly(
        self, texts: list[str], languages: list[str | None], titles: list[str], ids: list[int]
    ) -> list[ScoredText | None]:
        """Score a batch; if it fails, score one by one so one bad article cannot stop the others."""
        try:
            return list(self.score_texts(texts, languages, titles))
        except Exception:  # noqa: BLE001 - isolate the failing article below, then carry on
            log.exception("batch scoring failed; retrying article by article", extra={"articles": len(texts)})
        results: list[ScoredText | None] = []
        for text, language, title, article_id in zip(texts, languages, titles, ids, strict=True):
            try:
                results.append(self.score_texts([text], [language], [title])[0])
            except Exception:  # noqa: BLE001 - left unscored; `monitor rescore --only-missing` retries it
                log.exception("article could not be scored", extra={"article_id": article_id})
                results.append(None)
        return results


def _clauses(sentence: str) -> list[str]:
    parts = [part.strip() for part in _CLAUSE_RE.split(sentence) if part and part.strip()]
    # A clause that is only a name ("Nvidia" in "Nvidia, the chip giant, ...") joins the next one.
    merged: list[str] = []
    carry = ""
    for part in parts:
        part = f"{carry} {part}".strip() if carry else part
        if len(part.split()) < 2 and not _CJK_CHAR.search(part):
            carry = part
            continue
        carry = ""
        merged.append(part)
    if carry:
        merged.append(carry) if not merged else merged.__setitem__(-1, f"{merged[-1]} {carry}")
    return merged or [sentence]


def load_sentiment_backend(spec: str, config: ModelConfig) -> SentimentBackend:
    """The configured backend for a model spec: torch by default, ONNX Runtime when `backend: onnx`."""
    if config.backend == "onnx":
        from monitor.classify.onnx import load_onnx_backend

        return load_onnx_backend(
            spec,
            max_length=config.max_length,
            batch_size=config.batch_size,
            cache_dir=config.onnx_cache,
            threads=config.threads,
        )
    from monitor.classify.hf import load_backend

    return load_backend(
        spec, max_length=config.max_length, batch_size=config.batch_size, precision=config.precision
    )


def _load_multilingual(config: ModelConfig) -> SentimentBackend | None:
    """The non-English backend, or None (all text to the main model) when it cannot be loaded."""
    spec = config.multilingual
    try:
        if spec == DEFAULT_MULTILINGUAL:
            from monitor.classify import multilingual

            return multilingual.load_backend(config)
        return load_sentiment_backend(spec, config)  # type: ignore[arg-type]
    except (ImportError, AttributeError, ModelError, OSError) as exc:
        log.warning(
            "multilingual model unavailable; all languages go to the main model",
            extra={"model": spec, "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__},
        )
        return None
