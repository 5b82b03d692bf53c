"""The torch backend: any `transformers` sequence-classification model, or the project's shipped one.

`load_backend(spec, ...)` takes "compact-en" (the project's compact English model in models/sentiment-en,
article-level sentiment only; also "default" when called directly), a local folder (a shipped
model with manifest.json, or a regular Hugging Face folder) or a Hugging Face hub id. Labels are mapped
from the model's own `id2label`; a model that is not a sentiment model, or cannot be loaded (offline),
raises ModelError naming it and saying how to provide it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from monitor.classify.backend import ModelError, label_columns, to_label_order
from monitor.classify.shipped import DEFAULT_MODEL_DIR, ShippedModelError, is_shipped_dir, load_shipped
from monitor.classify.text import length_batches

log = logging.getLogger(__name__)

DEFAULT_SPEC = "default"
COMPACT_SPEC = "compact-en"  # `model.sentiment` value that selects models/sentiment-en
_threads_configured = False


def default_threads() -> int:
    """Cores this process may use, capped: small encoders gain little past 8 threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads once per process (config `model.threads`, else the usable cores)."""
    global _threads_configured
    import torch

    wanted = threads or default_threads()
    if not _threads_configured or threads:
        torch.set_num_threads(wanted)
        _threads_configured = True
    return torch.get_num_threads()


def native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16 where the CPU has native bf16 (about 3x faster here, same labels), else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r} (expected auto, fp32 or bf16)")
    return precision


class TransformersBackend:
    """Batched inference with a loaded model; see SentimentBackend."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        version: str,
        max_length: int,
        batch_size: int = 32,
        precision: str = "fp32",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.precision = resolve_precision(precision)
        # bf16 changes probabilities slightly: the stored version says which arithmetic produced a score.
        self.version = version if self.precision == "fp32" else f"{version}+{self.precision}"
        self.max_length = max_length
        self.batch_size = batch_size
        self.columns = label_columns(model.config.id2label, name)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, 3), dtype=np.float32)
        out = np.zeros((len(texts), len(self.columns)), dtype=np.float32)
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
                logits = self.model(**batch).logits.float()
                out[index] = torch.softmax(logits, dim=-1).numpy()
        return to_label_order(out, self.columns)


def _how_to_provide(spec: str) -> str:
    return (
        f"to use {spec!r} offline, download it where there is internet "
        f"(`huggingface-cli download {spec}`) and copy the Hugging Face cache (HF_HOME) to this machine, "
        "or set model.sentiment to a local folder holding config.json, the weights and the tokenizer; "
        "model.sentiment: default uses the model shipped in models/"
    )


def _weights_digest(folder: Path) -> str:
    for name in ("model.safetensors", "pytorch_model.bin", "weights.safetensors"):
        path = folder / name
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return "sha256:" + digest.hexdigest()[:12]
    return "unknown"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connect (assumed yes behind a proxy).

    Without this check an unreachable hub costs over a minute of huggingface_hub retries before the error.
    """
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection(
            (
                endpoint.hostname or "huggingface.co",
                endpoint.port or (443 if endpoint.scheme == "https" else 80),
            ),
            timeout=timeout,
        ).close()
    except OSError:
        return False
    return True


def _from_pretrained(source: str, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(source, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    return model, tokenizer


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_model(spec: str) -> tuple[Any, Any, str, str, int | None]:
    """(model, tokenizer, name, version, trained max_length or None) for "default", a folder or a hub id."""
    if spec in (DEFAULT_SPEC, COMPACT_SPEC):
        path = DEFAULT_MODEL_DIR
        if not is_shipped_dir(path):
            raise ModelError(
                f"the compact English sentiment model is missing from {path} (manifest.json not found): "
                "reinstall the project, or retrain it with `python models/train_sentiment.py`"
            )
    else:
        path = Path(spec).expanduser()
    try:
        if path.is_dir() and is_shipped_dir(path):
            model, tokenizer, manifest = load_shipped(path)
            return model, tokenizer, manifest.name, manifest.version, manifest.max_length
    except ShippedModelError as exc:
        raise ModelError(f"cannot load sentiment model {spec!r}: {exc}") from None

    looks_local = spec.startswith(("/", ".", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise ModelError(f"sentiment model path {spec!r} does not exist or is not a folder")
        try:
            model, tokenizer = _from_pretrained(str(path), local_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"cannot load sentiment model from folder {spec!r}: {_reason(exc)} (it needs config.json, "
                "the weights and the tokenizer files of a sequence-classification model)"
            ) from None
        return model, tokenizer, path.resolve().name, _weights_digest(path), None

    # A hub id: a snapshot in the local Hugging Face cache is loaded as a plain folder (no network at
    # all: even local_files_only=True lets transformers probe the hub for adapters, for over 20 s when
    # it is unreachable); otherwise the hub, when allowed and reachable.
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "config.json")
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        try:
            model, tokenizer = _from_pretrained(str(snapshot), local_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"cannot load sentiment model {spec!r} from the Hugging Face cache ({snapshot}): "
                f"{_reason(exc)}; {_how_to_provide(spec)}"
            ) from None
        return model, tokenizer, spec, snapshot.name[:12], None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub is unreachable"
        raise ModelError(
            f"cannot load sentiment model {spec!r}: not in the local Hugging Face cache and {why}; "
            f"{_how_to_provide(spec)}"
        )
    try:
        model, tokenizer = _from_pretrained(spec, local_only=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"cannot load sentiment model {spec!r}: {_reason(exc)}; {_how_to_provide(spec)}"
        ) from None
    version = str(getattr(model.config, "_commit_hash", None) or "unknown")[:12]
    return model, tokenizer, spec, version, None


def load_backend(
    spec: str, *, max_length: int = 128, batch_size: int = 32, precision: str = "auto"
) -> TransformersBackend:
    """Load a model by spec and check it is a sentiment model (ModelError otherwise)."""
    model, tokenizer, name, version, _trained = load_model(spec)
    limit = getattr(tokenizer, "model_max_length", None) or max_length
    limit = min(max_length, limit if limit < 100_000 else max_length)
    backend = TransformersBackend(
        model,
        tokenizer,
        name=name,
        version=version,
        max_length=limit,
        batch_size=batch_size,
        precision=precision,
    )
    log.info(
        "sentiment model loaded",
        extra={
            "model": name,
            "version": backend.version,
            "max_length": limit,
            "precision": backend.precision,
        },
    )
    return backend
