"""Classify stage: sentiment (the project's own fine-tuned MiniLM by default) and topics, in batches.

classifier = Classifier.from_settings(settings)        # loads the models once
classifier.score_texts(["Nvidia slides as Google's TPUs win Meta"])
classifier.score_articles(engine, events)                # ArticleCollected -> stored -> ArticleScored
"""

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a busy machine (other
# processes on the same cores) spinning threads made batched inference 4-5x slower; see models/README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from monitor.classify.backend import LABELS, ModelError, SentimentBackend  # noqa: E402
from monitor.classify.classifier import Classifier, ScoredText, TopicResult  # noqa: E402

__all__ = ["LABELS", "Classifier", "ModelError", "ScoredText", "SentimentBackend", "TopicResult"]
