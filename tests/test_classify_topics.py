"""Topic aliases in English, Simplified and Traditional Chinese; relevance; the model's say on topics."""

from __future__ import annotations

import pytest

from monitor.classify.topics import TopicMatcher, keyword_relevance
from monitor.config import TopicConfig

TOPICS = {
    "nvidia": TopicConfig(
        keywords=["nvidia", "jensen huang", "英伟达", "英偉達", "輝達", "黄仁勋", "黃仁勳"]
    ),
    "tpu": TopicConfig(keywords=["tpu", "tensor processing unit", "谷歌TPU"]),
    "custom_chips": TopicConfig(keywords=["asic", "custom silicon", "trainium", "自研芯片", "定制芯片"]),
    "ai_bubble": TopicConfig(keywords=["ai bubble", "dot-com", "泡沫", "閉環融資"]),
}


@pytest.fixture(scope="module")
def matcher() -> TopicMatcher:
    return TopicMatcher(TOPICS)


def names(matcher: TopicMatcher, text: str) -> set[str]:
    return {match.name for match in matcher.match(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nvidia slides as Google's TPUs win Meta", {"nvidia", "tpu"}),
        ("NVIDIA's Jensen Huang dismisses AI-bubble fears", {"nvidia", "ai_bubble"}),
        ("Is this another dot-com moment? The AI bubble debate", {"ai_bubble"}),
        ("Amazon ramps Trainium2; custom silicon gains share", {"custom_chips"}),
        ("Google's Tensor Processing Unit business grows", {"tpu"}),
        ("Amazon's Trainium2 and Google's TPUv5 gain ground", {"custom_chips", "tpu"}),
        # Simplified Chinese: substrings, no word boundaries
        ("英伟达股价大跌，谷歌TPU赢得Meta订单", {"nvidia", "tpu"}),
        ("黄仁勋称AI没有泡沫", {"nvidia", "ai_bubble"}),
        ("科技巨头加速自研芯片", {"custom_chips"}),
        # Traditional Chinese
        ("輝達股價重挫，市場憂慮閉環融資", {"nvidia", "ai_bubble"}),
        ("英偉達創始人黃仁勳訪台", {"nvidia"}),
        # Latin keyword next to CJK characters
        ("Nvidia英伟达", {"nvidia"}),
    ],
)
def test_keywords_in_three_scripts(matcher: TopicMatcher, text: str, expected: set[str]) -> None:
    assert names(matcher, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Basic materials stocks rise",  # "asic" inside "Basic"
        "The stupendous rally continues",  # "tpu" inside "stupendous"
        "Nvidiana is a made-up word",
        "Apple unveils a new iPhone",
    ],
)
def test_latin_keywords_need_word_boundaries(matcher: TopicMatcher, text: str) -> None:
    assert names(matcher, text) == set()


def test_relevance_grows_with_mentions_and_headline(matcher: TopicMatcher) -> None:
    once = matcher.match("Nvidia reports on Wednesday")[0].relevance
    thrice = matcher.match("Nvidia, Nvidia and Nvidia again")[0].relevance
    in_title = matcher.match("Nvidia reports on Wednesday", title="Nvidia reports")[0].relevance
    assert 0.5 <= once < thrice <= 1
    assert once < in_title <= 1
    assert names(matcher, "Nvidia, Nvidia and Nvidia again") == {"nvidia"}


def test_overlapping_aliases_count_once() -> None:
    matcher = TopicMatcher({"tpu": TopicConfig(keywords=["tpu", "tpus"])})
    (match,) = matcher.match("Google sells TPUs")
    assert match.relevance == keyword_relevance(1, False)


def test_keyword_relevance_is_bounded() -> None:
    assert keyword_relevance(0, True) == 0
    assert 0.5 <= keyword_relevance(1, False) < keyword_relevance(3, True) <= 1


def test_mentions_and_hits(matcher: TopicMatcher) -> None:
    assert matcher.mentions("Nvidia slides as Google's TPUs win Meta") == {"nvidia", "tpu"}
    assert matcher.keyword_hits("TPU, TPUs and more tpus", "tpu") == ["tpu", "tpu", "tpu"]
    with pytest.raises(KeyError, match="unknown topic"):
        matcher.keyword_hits("x", "amd")


def test_a_named_topic_the_text_is_not_about_is_dropped(classifier) -> None:  # noqa: ANN001
    """Aliases propose, the model decides: "bubble" in bubble tea is not AI-bubble talk."""
    tea, talk = classifier.score_texts(
        [
            "Bubble tea chain Sweet Pearl files for a Hong Kong IPO",
            "AI bubble fears return as Nvidia tumbles",
        ]
    )
    assert "ai_bubble" not in {t.name for t in tea.topics}
    (bubble,) = [t for t in talk.topics if t.name == "ai_bubble"]
    assert bubble.keywords == ("ai bubble",) and bubble.relevance >= 0.5 and bubble.label == "negative"


def test_no_topic_from_similarity_alone_by_default(classifier) -> None:  # noqa: ANN001
    """A related headline that names no alias gets no topic unless `topic_add_threshold` allows it."""
    result = classifier.score_texts(["Hyperscalers pour billions more into data-center capex"])[0]
    assert result.topics == ()
