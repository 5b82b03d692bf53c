"""The optional int8 ONNX Runtime backend agrees with torch on clear headlines and caches its export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitor.classify.classifier import load_sentiment_backend
from monitor.config import ModelConfig

HEADLINES = [
    "Nvidia shares plunge 12% after revenue guidance disappoints",
    "Broadcom raises full-year outlook as AI chip demand surges",
    "Nvidia to report third-quarter earnings on Wednesday",
    "Micron stock downgraded to sell at Morgan Stanley",
]


def test_onnx_int8_backend_matches_torch(tmp_path: Path) -> None:
    config = ModelConfig(backend="onnx", onnx_cache=str(tmp_path), multilingual=None, threads=2)
    backend = load_sentiment_backend("compact-en", config)
    assert backend.name == "aichip-sentiment-en" and backend.version.endswith("+onnx-int8")
    exports = list(tmp_path.glob("*.int8.onnx"))
    assert len(exports) == 1 and exports[0].stat().st_size < 30e6
    onnx_probs = backend.predict_proba(HEADLINES)
    torch_probs = load_sentiment_backend("compact-en", ModelConfig(precision="fp32")).predict_proba(HEADLINES)
    assert onnx_probs.shape == (4, 3) and np.allclose(onnx_probs.sum(1), 1, atol=1e-5)
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1)).all()
    assert np.abs(onnx_probs - torch_probs).max() < 0.15
    # A second load reuses the cached export.
    mtime = exports[0].stat().st_mtime_ns
    load_sentiment_backend("default", config)
    assert exports[0].stat().st_mtime_ns == mtime
