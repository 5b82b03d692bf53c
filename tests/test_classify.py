"""The classifier with the real shipped model: labels, scores, per-topic sentiment, bad input, routing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.classify import LABELS, Classifier
from monitor.classify.classifier import MAX_CHUNKS, article_text, chunk_text
from monitor.classify.hf import TransformersBackend


def test_finance_headlines_get_sensible_labels(classifier: Classifier) -> None:
    results = classifier.score_texts(
        [
            "Nvidia shares plunge 12% after revenue guidance disappoints",
            "Broadcom raises full-year outlook as AI chip demand surges, stock jumps to record",
            "Nvidia to report third-quarter earnings on Wednesday",
        ]
    )
    assert [r.label for r in results] == ["negative", "positive", "neutral"]
    assert results[0].score < -0.3 < 0.3 < results[1].score
    for result in results:
        assert -1 <= result.score <= 1
        assert 0 < result.confidence <= 1
        assert abs(sum(result.probabilities) - 1) < 1e-3
        assert result.model_name == "aichip-sentiment-en"
        assert result.model_version
        assert result.score == pytest.approx(result.probabilities[2] - result.probabilities[0], abs=1e-3)


def test_batched_scores_match_one_at_a_time(classifier: Classifier) -> None:
    texts = ["Nvidia slides", "AMD beats estimates and raises guidance", "Markets are closed on Thursday"]
    batched = [r.score for r in classifier.score_texts(texts)]
    single = [classifier.score_texts([text])[0].score for text in texts]
    assert batched == pytest.approx(single, abs=1e-3)


def test_two_topics_in_one_sentence_get_their_own_sentiment(classifier: Classifier) -> None:
    result = classifier.score_texts(["Nvidia slides as Google's TPUs win Meta"])[0]
    topics = {topic.name: topic for topic in result.topics}
    assert set(topics) >= {"nvidia", "tpu"}
    assert topics["nvidia"].basis == "mentions"
    # "Google's TPUs win Meta" alone reads as neutral; beside the rival's slide it is good news for TPUs.
    assert topics["tpu"].basis == "rival"
    assert topics["nvidia"].sentiment < 0 < topics["tpu"].sentiment
    assert topics["nvidia"].sentiment < topics["tpu"].sentiment - 0.3


def test_two_topics_in_separate_sentences(classifier: Classifier) -> None:
    text = "Nvidia stock tumbles after a weak forecast. Meanwhile Amazon's Trainium orders soar to a record."
    topics = {t.name: t for t in classifier.score_texts([text])[0].topics}
    assert topics["nvidia"].sentiment < 0 < topics["custom_chips"].sentiment


def test_one_topic_uses_the_article_score(classifier: Classifier) -> None:
    result = classifier.score_texts(["Nvidia shares plunge after export curbs"])[0]
    (topic,) = [t for t in result.topics if t.name == "nvidia"]
    assert topic.basis == "article"
    assert topic.sentiment == pytest.approx(result.score, abs=1e-3)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_neutral_with_no_confidence(classifier: Classifier, text: str) -> None:
    result = classifier.score_texts([text])[0]
    assert (result.label, result.score, result.confidence, result.chunks) == ("neutral", 0.0, 0.0, 0)


def test_very_long_text_is_chunked_and_bounded(classifier: Classifier) -> None:
    sentence = "Nvidia shares fell sharply as investors worried about competition from custom chips. "
    text = sentence * (100_000 // len(sentence) + 1)
    assert len(text) >= 100_000
    result = classifier.score_texts([text])[0]
    assert result.truncated
    assert 1 < result.chunks <= MAX_CHUNKS
    assert result.label == "negative"


def test_html_remnants_and_entities_are_cleaned(classifier: Classifier) -> None:
    result = classifier.score_texts(
        ['<p>Nvidia &amp; AMD <b>soar</b> on record AI demand</p> <a href="x">link</a>']
    )[0]
    assert "<" not in result.text and "&amp;" not in result.text
    assert result.text.startswith("Nvidia & AMD soar")
    assert result.label == "positive"


@pytest.mark.parametrize(
    "text", ["🚀🚀🚀", "Nvidia 🚀🚀 to the moon 📈", "$NVDA", "https://t.co/abc", "。。。", "\u200b"]
)
def test_odd_input_gets_a_sane_score(classifier: Classifier, text: str) -> None:
    result = classifier.score_texts([text])[0]
    assert result.label in LABELS
    assert -1 <= result.score <= 1
    assert json.dumps(result.to_dict(), ensure_ascii=False)


def test_mixed_languages_and_non_string_input(classifier: Classifier) -> None:
    results = classifier.score_texts(["英伟达 Nvidia 股价大跌 shares plunge", "輝達股價創新高"])
    assert [r.language for r in results] == ["zh", "zh"]
    with pytest.raises(TypeError, match="strings"):
        classifier.score_texts([None])  # type: ignore[list-item]


def test_routing_sends_other_languages_to_the_multilingual_backend(classifier: Classifier) -> None:
    main = classifier.backends["main"]
    assert isinstance(main, TransformersBackend)
    second = TransformersBackend(main.model, main.tokenizer, name="second-model", version="9", max_length=64)
    routed = Classifier(main, multilingual=second, route_languages=["en"])
    results = routed.score_texts(
        ["Nvidia shares plunge", "英伟达股价大跌", "Nvidia-Aktie stürzt ab"], languages=[None, None, "de-DE"]
    )
    assert [r.model_name for r in results] == ["aichip-sentiment-en", "second-model", "second-model"]
    assert [r.language for r in results] == ["en", "zh", "de"]
    # Without a multilingual backend everything goes to the main model.
    alone = Classifier(main, route_languages=["en"]).score_texts(["英伟达股价大跌"])[0]
    assert alone.model_name == "aichip-sentiment-en"


def test_chunking_respects_the_budget() -> None:
    text = " ".join(f"Sentence number {i} says little." for i in range(200)) + " " + "x" * 5000
    chunks = chunk_text(text, 64)
    assert all(len(chunk) <= 64 * 3.4 for chunk in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
    assert chunk_text("英伟达股价大跌。" * 50, 32)[0].endswith("。")


def test_article_text_drops_a_summary_that_repeats_the_title() -> None:
    assert article_text("Nvidia slides", "Nvidia slides  Reuters") == "Nvidia slides"
    assert (
        article_text("Nvidia slides", "Shares fell 5% on Tuesday.")
        == "Nvidia slides\nShares fell 5% on Tuesday."
    )
    assert article_text("", "Only a summary") == "Only a summary"


def test_probabilities_are_well_formed(classifier: Classifier) -> None:
    probs = classifier.backends["main"].predict_proba(["a", "Nvidia surges", "Nvidia sinks " * 40])
    assert probs.shape == (3, 3)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
