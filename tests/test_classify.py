"""The classifier with the real shipped model: labels, scores, sentiment toward topics, bad input, routing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.classify import LABELS, Classifier
from monitor.classify.classifier import MAX_CHUNKS, TopicResult, article_text, chunk_text
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
        assert result.model_name == "aichip-sentiment"
        assert result.model_version
        assert result.score == pytest.approx(result.probabilities[2] - result.probabilities[0], abs=1e-3)


def test_batched_scores_match_one_at_a_time(classifier: Classifier) -> None:
    texts = ["Nvidia slides", "AMD beats estimates and raises guidance", "Markets are closed on Thursday"]
    batched = [r.score for r in classifier.score_texts(texts)]
    single = [classifier.score_texts([text])[0].score for text in texts]
    assert batched == pytest.approx(single, abs=1e-3)


def topics_of(classifier: Classifier, text: str) -> dict[str, TopicResult]:
    return {topic.name: topic for topic in classifier.score_texts([text])[0].topics}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The story the product exists for: one company's loss is its rival's gain.
        ("Google's TPUs win Meta as Nvidia loses the deal", {"nvidia": "negative", "tpu": "positive"}),
        (
            "Amazon's Trainium wins Anthropic work that once ran on Nvidia GPUs",
            {"nvidia": "negative", "custom_chips": "positive"},
        ),
        (
            "Meta signs a multibillion-dollar deal to use Google TPUs instead of Nvidia GPUs",
            {"nvidia": "negative", "tpu": "positive"},
        ),
        ("英伟达股价下挫，谷歌向Meta推销TPU", {"nvidia": "negative", "tpu": "positive"}),
        ("分析师：谷歌TPU对英伟达构成严重威胁", {"nvidia": "negative", "tpu": "positive"}),
        ("輝達股價重挫，市場憂慮AI泡沫", {"nvidia": "negative", "ai_bubble": "negative"}),
        # Bubble talk is bad for the AI trade; its dismissal is not.
        ("AI bubble fears return as Nvidia tumbles", {"ai_bubble": "negative"}),
        (
            "Jensen Huang dismisses AI bubble fears as Nvidia posts record revenue",
            {"nvidia": "positive", "ai_bubble": "positive"},
        ),
    ],
)
def test_sentiment_toward_each_topic(classifier: Classifier, text: str, expected: dict[str, str]) -> None:
    topics = topics_of(classifier, text)
    assert {name: topics[name].label for name in expected if name in topics} == expected
    assert all(topics[name].basis == "model" for name in expected)


def test_topics_in_separate_sentences(classifier: Classifier) -> None:
    text = "Nvidia stock tumbles after a weak forecast. Meanwhile Broadcom raises its outlook on AI demand."
    topics = topics_of(classifier, text)
    assert topics["nvidia"].sentiment < 0 < topics["custom_chips"].sentiment


def test_a_topic_added_in_the_config_works_without_retraining() -> None:
    """A user's own topic (AMD, which training never labelled) is read from its aliases and description."""
    from monitor.config import ModelConfig, TopicConfig

    topics = {
        "amd": TopicConfig(
            keywords=["amd", "lisa su", "instinct", "超威"], description="AMD and its Instinct AI chips"
        ),
        "nvidia": TopicConfig(keywords=["nvidia", "英伟达"], description="Nvidia"),
    }
    classifier = Classifier.from_config(ModelConfig(threads=2, precision="fp32"), topics)
    result = classifier.score_texts(["AMD wins OpenAI order for Instinct chips, a blow to Nvidia"])[0]
    found = {t.name: t.label for t in result.topics}
    assert found == {"amd": "positive", "nvidia": "negative"}


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


@pytest.fixture(scope="module")
def compact() -> TransformersBackend:
    """The compact English model (`model.sentiment: compact-en`), a generic article-level sentiment model."""
    from monitor.classify.hf import load_backend

    return load_backend("compact-en", precision="fp32")


def test_routing_sends_other_languages_to_the_multilingual_backend(
    classifier: Classifier, compact: TransformersBackend
) -> None:
    target = classifier.backends["main"]
    routed = Classifier(compact, multilingual=target, route_languages=["en"], topics=classifier.topics)
    results = routed.score_texts(
        ["Nvidia shares plunge", "英伟达股价大跌", "Nvidia-Aktie stürzt ab"], languages=[None, None, "de-DE"]
    )
    assert [r.model_name for r in results] == ["aichip-sentiment-en", "aichip-sentiment", "aichip-sentiment"]
    assert [r.language for r in results] == ["en", "zh", "de"]
    assert [t.basis for r in results for t in r.topics] == ["mentions", "model", "model"]
    # Without a multilingual backend everything goes to the main model.
    alone = Classifier(compact, route_languages=["en"]).score_texts(["英伟达股价大跌"])[0]
    assert alone.model_name == "aichip-sentiment-en"


def test_a_generic_model_reads_topics_from_the_sentences_naming_them(
    classifier: Classifier, compact: TransformersBackend
) -> None:
    generic = Classifier(compact, topics=classifier.topics)
    text = (
        "Nvidia shares plunge after a weak forecast. "
        "Separately, Broadcom shares jump 9% to a record after it raises its outlook."
    )
    topics = {t.name: t for t in generic.score_texts([text])[0].topics}
    assert topics["nvidia"].basis == "mentions" and topics["nvidia"].label == "negative"
    assert topics["custom_chips"].label == "positive"


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
