"""Classify stage: sentiment toward the article and each topic it is about (the project's model), in batches.

classifier = Classifier.from_settings(settings)        # loads the models once
classifier.score_texts(["Nvidia slides as Google's TPUs win Meta"])
classifier.score_articles(engine, events)                # ArticleCollected -> stored -> ArticleScored
"""

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a busy machine (other
# processes on the same cores) spinning threads made batched inference 4-5x slower; see models/README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _return_freed_tensors_to_the_os() -> None:
    """glibc keeps freed large blocks in the heap once it has raised its mmap threshold (it does so after the
    first big free), so a long-lived process grows by every batch's activations. A fixed threshold keeps
    tensor-sized blocks in mmap, returned on free: measured here, 576 -> 492 MB resident after scoring 512
    headlines (bench/memory.py measures `monitor run`). Best effort; other C libraries are left alone."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed, no dynamic raise
        libc.mallopt(-8, 2)  # M_ARENA_MAX: scoring threads share two arenas instead of one per core x 8
    except (OSError, AttributeError):
        pass


_return_freed_tensors_to_the_os()

from monitor.classify.backend import LABELS, ModelError, SentimentBackend  # noqa: E402
from monitor.classify.classifier import Classifier, ScoredText, TopicResult  # noqa: E402

__all__ = ["LABELS", "Classifier", "ModelError", "ScoredText", "SentimentBackend", "TopicResult"]
