"""Optional ONNX Runtime backend: the same model exported once and quantised to int8 (dynamic, per-tensor).

Chosen with `model.backend: onnx`. The export is built on first use from the configured model (about ten
seconds) and cached under `model.onnx_cache` (default `~/.cache/aichip-monitor/onnx`), keyed by the
model's name and version, so it is never committed and always matches the model in use.
Needs the `onnx` extra: `pip install 'aichip-monitor[onnx]'`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitor.classify.backend import ModelError, label_columns, to_label_order
from monitor.classify.text import length_batches

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "aichip-monitor" / "onnx"
OPSET = 17


class OnnxBackend:
    """Batched int8 inference through onnxruntime; see SentimentBackend."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        *,
        name: str,
        version: str,
        columns: list[int],
        max_length: int,
        batch_size: int,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.name = name
        self.version = f"{version}+onnx-int8"
        self.columns = columns
        self.max_length = max_length
        self.batch_size = batch_size
        self.inputs = [item.name for item in session.get_inputs()]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 3), dtype=np.float32)
        out = np.zeros((len(texts), len(self.columns)), dtype=np.float32)
        for index in length_batches([len(t) for t in texts], self.batch_size):
            batch = self.tokenizer(
                [texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feed = {name: batch[name].astype(np.int64) for name in self.inputs if name in batch}
            if "token_type_ids" in self.inputs and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            logits = self.session.run(["logits"], feed)[0].astype(np.float32)
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            out[index] = probabilities / probabilities.sum(axis=1, keepdims=True)
        return to_label_order(out, self.columns)


def _cache_file(cache: Path, spec: str, name: str, version: str) -> Path:
    key = hashlib.sha256(
        f"{Path(spec).expanduser().resolve() if Path(spec).expanduser().exists() else spec}"
        f"|{name}|{version}|opset{OPSET}".encode()
    ).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return cache / f"{safe}-{key}.int8.onnx"


def export_int8(model: Any, tokenizer: Any, target: Path) -> None:
    """Export `model` to ONNX (dynamic batch and length) and quantise its weights to int8, atomically."""
    import torch

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError(
            f"the ONNX backend needs onnxruntime and onnx: pip install 'aichip-monitor[onnx]' ({exc})"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a short headline", "another one"], padding=True, return_tensors="pt")
    names = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in sample]
    axes = {key: {0: "batch", 1: "sequence"} for key in names} | {"logits": {0: "batch"}}
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        plain = Path(work) / "model.onnx"
        quantized = Path(work) / "model.int8.onnx"
        try:
            # The TorchScript exporter is deprecated but needs no extra packages; its warnings are noise here.
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    tuple(sample[key] for key in names),
                    str(plain),
                    input_names=names,
                    output_names=["logits"],
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
        except ImportError as exc:
            raise ModelError(
                f"the ONNX backend needs the onnx package: pip install 'aichip-monitor[onnx]' ({exc})"
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(plain), str(quantized), weight_type=QuantType.QInt8)
        os.replace(quantized, target)


def load_onnx_backend(
    spec: str,
    *,
    max_length: int = 128,
    batch_size: int = 32,
    cache_dir: str | None = None,
    threads: int | None = None,
) -> OnnxBackend:
    """Load (exporting on first use) the int8 ONNX form of the model named by `spec`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(
            "model.backend is 'onnx' but onnxruntime is not installed: "
            "pip install 'aichip-monitor[onnx]', or set model.backend: torch"
        ) from None
    from monitor.classify.hf import default_threads, load_model

    model, tokenizer, name, version, _trained = load_model(spec)
    columns = label_columns(model.config.id2label, name)
    target = _cache_file(Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE, spec, name, version)
    if not target.is_file():
        log.info("exporting the sentiment model to ONNX int8", extra={"model": name, "path": str(target)})
        try:
            export_int8(model, tokenizer, target)
        except OSError as exc:
            raise ModelError(
                f"cannot write the ONNX export of {name!r} to {target.parent}: {exc} "
                "(set model.onnx_cache to a writable folder)"
            ) from None
    del model
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    limit = getattr(tokenizer, "model_max_length", None) or max_length
    limit = min(max_length, limit if limit < 100_000 else max_length)
    return OnnxBackend(
        session,
        tokenizer,
        name=name,
        version=version,
        columns=columns,
        max_length=limit,
        batch_size=batch_size,
    )
