"""The contract every sentiment model implements, whatever runs it (torch, ONNX, an embedding head).

The classifier only needs class probabilities in one fixed order; label names, batching, devices and
file formats stay inside each backend. A backend is loaded once per process and must be safe to call
with any batch of strings (empty strings included: they are filtered out before the call).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

# Column order of every predict_proba result.
LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2

_SYNONYMS = {
    "negative": NEGATIVE,
    "neg": NEGATIVE,
    "bearish": NEGATIVE,
    "bear": NEGATIVE,
    "neutral": NEUTRAL,
    "neu": NEUTRAL,
    "positive": POSITIVE,
    "pos": POSITIVE,
    "bullish": POSITIVE,
    "bull": POSITIVE,
}


class ModelError(Exception):
    """A model cannot be used: not found, not loadable offline, or not a sentiment model. Names the model."""


@runtime_checkable
class SentimentBackend(Protocol):
    """A loaded sentiment model. `name` and `version` are stored with every score (provenance)."""

    name: str
    version: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), 3), columns in LABELS order, rows summing to 1."""
        ...


def label_columns(id2label: Mapping[int, str], model: str) -> list[int]:
    """For each output index of a model, the LABELS column it feeds (from its id2label, case-insensitive).

    Accepts positive/negative/neutral and bullish/bearish spellings; a two-class model (no neutral)
    is accepted and gets P(neutral) = 0. Anything else is not a sentiment model: ModelError.
    """
    columns: list[int] = []
    names = [str(id2label[index]) for index in sorted(id2label)]
    for raw in names:
        column = _SYNONYMS.get(raw.strip().lower())
        if column is None:
            break
        columns.append(column)
    if (
        len(columns) != len(names)
        or NEGATIVE not in columns
        or POSITIVE not in columns
        or (len(set(columns)) != len(columns))
    ):
        raise ModelError(
            f"model {model!r} has labels {names}, which are not sentiment labels: expected "
            "negative/neutral/positive or bearish/neutral/bullish (case-insensitive)"
        )
    return columns


def to_label_order(probabilities: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """Reorder a (n, k) probability matrix from a model's own order into LABELS order (n, 3)."""
    out = np.zeros((probabilities.shape[0], len(LABELS)), dtype=np.float32)
    for source, target in enumerate(columns):
        out[:, target] = probabilities[:, source]
    return out
