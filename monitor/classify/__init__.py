"""Classify stage: sentiment (the project's own fine-tuned MiniLM by default) and topics, in batches.

classifier = Classifier.from_settings(settings)        # loads the models once
classifier.score_texts(["Nvidia slides as Google's TPUs win Meta"])
classifier.score_articles(engine, events)                # ArticleCollected -> stored -> ArticleScored
"""

from monitor.classify.backend import LABELS, ModelError, SentimentBackend
from monitor.classify.classifier import Classifier, ScoredText, TopicResult

__all__ = ["LABELS", "Classifier", "ModelError", "ScoredText", "SentimentBackend", "TopicResult"]
