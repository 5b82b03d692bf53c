"""The classifier stage: sentiment toward the article and each topic it is about, in batches.

One `Classifier` per process holds the loaded models. Every text is cleaned, routed by language to a
backend (the only routing decision lives in `_route`), cut into chunks that fit the model, and scored;
chunk probabilities are averaged (weighted by length).

With the project's model (`monitor.classify.target`) one encoder pass per chunk gives the article's
sentiment and, for every configured topic, whether the text is about it and its sentiment *toward* it.
A topic is assigned when an alias names it and the model agrees it is about it (`model.topic_threshold`),
or, with no alias, when the model is sure enough (`model.topic_add_threshold`, off by default). Any other
sentiment model (a Hugging Face id or folder) has no notion of a topic: topics come from aliases and
each topic's sentiment from the sentences naming it (basis "mentions").
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
from monitor.classify.target import TargetBackend, TextReading
from monitor.classify.text import clean_text, split_sentences
from monitor.classify.topics import TopicMatcher
from monitor.config import ModelConfig, Settings, TopicConfig
from monitor.events import ArticleCollected, ArticleScored, TopicScore

log = logging.getLogger(__name__)

MAX_CHARS = 20_000  # of cleaned text per input; the rest of a 100 KB page adds little but cost
MAX_CHUNKS = 16
MAIN, MULTILINGUAL = "main", "multilingual"
DEFAULT_SPEC = "default"

_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One piece of a text to score: an article chunk, or (generic models) a sentence naming a topic."""

    text_index: int
    route: str
    text: str
    weight: float
    topic: str | None = None


@dataclass(frozen=True)
class TopicResult:
    name: str
    relevance: float
    sentiment: float
    label: str
    keywords: tuple[str, ...] = ()
    basis: str = "model"  # "model" (the target-aware model), "mentions" or "article" (generic models)


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
        topic_threshold: float = 0.5,
        topic_add_threshold: float = 1.0,
    ) -> None:
        self.backends: dict[str, SentimentBackend] = {MAIN: main}
        if multilingual is not None:
            self.backends[MULTILINGUAL] = multilingual
        self.route_languages = {base_language(code) for code in route_languages} - {None}
        self.topics = topics
        self.max_length = max_length
        self.batch_size = batch_size
        self.topic_threshold = topic_threshold
        self.topic_add_threshold = topic_add_threshold

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
        classifier = cls(
            main,
            multilingual=multilingual,
            route_languages=config.route_languages,
            topics=TopicMatcher(topics) if topics else None,
            max_length=config.max_length,
            batch_size=config.batch_size,
            topic_threshold=config.topic_threshold,
            topic_add_threshold=config.topic_add_threshold,
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

        chunks: list[_Chunk] = []
        chunk_counts = [0] * len(texts)
        for i, (cleaned, lang, _truncated) in enumerate(prepared):
            if not cleaned:
                continue
            route = self._route(lang)
            pieces = chunk_text(cleaned, self.max_length)
            if len(pieces) > MAX_CHUNKS:
                log.info(
                    "long text: scoring its first chunks only",
                    extra={"chunks": len(pieces), "scored": MAX_CHUNKS},
                )
                pieces = pieces[:MAX_CHUNKS]
            chunk_counts[i] = len(pieces)
            chunks.extend(_Chunk(i, route, piece, max(1.0, _weighted_length(piece))) for piece in pieces)
            if self.topics is not None and not self._reads_topics(route):
                chunks.extend(self._mention_chunks(i, route, cleaned))

        readings = self._read(chunks)
        by_text: dict[int, list[tuple[_Chunk, TextReading]]] = {}
        for chunk, reading in zip(chunks, readings, strict=True):
            by_text.setdefault(chunk.text_index, []).append((chunk, reading))
        results: list[ScoredText] = []
        for i, (cleaned, lang, truncated) in enumerate(prepared):
            scored = by_text.get(i, [])
            own = [(r.article, c.weight) for c, r in scored if c.topic is None]
            backend = self.backends[self._route(lang)]
            if not own:
                article = np.array([0.0, 1.0, 0.0], dtype=np.float32)
                confidence = 0.0
            else:
                weights = np.array([w for _, w in own])
                article = (np.stack([p for p, _ in own]) * weights[:, None]).sum(0) / weights.sum()
                confidence = float(article.max())
            title = titles[i] if titles is not None else None
            if self._reads_topics(self._route(lang)):
                topic_results = self._assign(scored)
            else:
                topic_results = self._topics_by_mentions(cleaned, title, scored, article)
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

    def _reads_topics(self, route: str) -> bool:
        """True when the route's model reads sentiment toward a topic itself (the project's model)."""
        return self.topics is not None and isinstance(self.backends[route], TargetBackend)

    def _read(self, chunks: list[_Chunk]) -> list[TextReading]:
        """One reading per chunk: article probabilities and (target-aware models) the view of each topic."""
        out: list[TextReading | None] = [None] * len(chunks)
        specs = self.topics.specs if self.topics is not None else []
        for route, backend in self.backends.items():
            index = [k for k, chunk in enumerate(chunks) if chunk.route == route]
            for start in range(0, len(index), self.batch_size * 8):
                part = index[start : start + self.batch_size * 8]
                part_texts = [chunks[k].text for k in part]
                if isinstance(backend, TargetBackend):
                    for k, reading in zip(part, backend.read(part_texts, specs), strict=True):
                        out[k] = reading
                    continue
                probs = np.asarray(backend.predict_proba(part_texts), dtype=np.float32)
                if probs.shape != (len(part), 3):
                    raise ModelError(
                        f"backend {backend.name!r} returned shape {probs.shape}, expected ({len(part)}, 3)"
                    )
                for row, k in enumerate(part):
                    out[k] = TextReading(probs[row], {})
        return [r for r in out if r is not None]

    def _assign(self, scored: list[tuple[_Chunk, TextReading]]) -> list[TopicResult]:
        """Topics the text is about, with the model's sentiment toward each (see the module docstring).

        Over a long text's chunks: P(about) is the highest any chunk gives; the sentiment is the chunks'
        average, weighted by length and P(about), over the chunks that name the topic when any does.
        """
        assert self.topics is not None
        results = []
        for spec in self.topics.specs:
            views = [
                (chunk, reading.topics[spec.name]) for chunk, reading in scored if spec.name in reading.topics
            ]
            if not views:
                continue
            about = max(view.about for _c, view in views)
            keywords = tuple(dict.fromkeys(alias for _c, view in views for alias in view.mentions))
            if keywords and about < self.topic_threshold:
                continue
            if not keywords and (self.topic_add_threshold >= 1.0 or about < self.topic_add_threshold):
                continue  # 1.0 means never: a saturated softmax can reach it
            named = [(c, v) for c, v in views if v.mentions] or views
            weights = np.array([c.weight * max(v.about, 1e-3) for c, v in named])
            probs = (np.stack([v.probabilities for _c, v in named]) * weights[:, None]).sum(0) / weights.sum()
            results.append(
                TopicResult(
                    name=spec.name,
                    relevance=round(about, 4),
                    sentiment=round(_score(probs), 4),
                    label=label_of(probs),
                    keywords=keywords,
                    basis="model",
                )
            )
        results.sort(key=lambda result: -result.relevance)
        return results

    def _mention_chunks(self, text_index: int, route: str, text: str) -> list[_Chunk]:
        """For a generic model: each sentence that names a topic, scored as that topic's evidence."""
        assert self.topics is not None
        out = []
        for sentence in split_sentences(text):
            for name in sorted(self.topics.mentions(sentence)):
                out.append(_Chunk(text_index, route, sentence, 1.0, name))
        return out

    def _topics_by_mentions(
        self, text: str, title: str | None, scored: list[tuple[_Chunk, TextReading]], article: np.ndarray
    ) -> list[TopicResult]:
        """Generic models: topics named by alias; sentiment of the sentences naming them, or the article."""
        if self.topics is None:
            return []
        results = []
        for match in self.topics.match(text, title):
            mine = [reading.article for chunk, reading in scored if chunk.topic == match.name]
            probs = np.mean(mine, axis=0) if mine else article
            results.append(
                TopicResult(
                    name=match.name,
                    relevance=match.relevance,
                    sentiment=round(_score(probs), 4),
                    label=label_of(probs),
                    keywords=match.keywords,
                    basis="mentions" if mine else "article",
                )
            )
        return results

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


def load_sentiment_backend(spec: str, config: ModelConfig) -> SentimentBackend:
    """The backend for a model spec: the project's target-aware model for "default" (or a folder holding
    one); any other spec is a generic sentiment model, run by torch (or ONNX Runtime, `backend: onnx`)."""
    from pathlib import Path

    from monitor.classify import target

    if spec == DEFAULT_SPEC or (
        Path(spec).expanduser().is_dir() and target.is_target_dir(Path(spec).expanduser())
    ):
        if config.backend == "onnx":
            log.warning("model.backend onnx applies to generic models; the project's model runs on torch")
        directory = None if spec == DEFAULT_SPEC else Path(spec).expanduser()
        return target.load_backend(config, directory)
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
        return load_sentiment_backend(spec, config)  # type: ignore[arg-type]
    except (ImportError, AttributeError, ModelError, OSError) as exc:
        log.warning(
            "multilingual model unavailable; all languages go to the main model",
            extra={"model": spec, "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__},
        )
        return None
