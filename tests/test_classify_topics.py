"""Topic matching: keywords in English, Simplified and Traditional Chinese, similarity, relevance."""

from __future__ import annotations

import pytest

from monitor.classify.topics import TopicMatcher, keyword_relevance, similarity_relevance
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
    return TopicMatcher(TOPICS, encoder=None)


def names(matcher: TopicMatcher, text: str) -> set[str]:
    return {match.name for match in matcher.match([text])[0]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nvidia slides as Google's TPUs win Meta", {"nvidia", "tpu"}),
        ("NVIDIA's Jensen Huang dismisses AI-bubble fears", {"nvidia", "ai_bubble"}),
        ("Is this another dot-com moment? The AI bubble debate", {"ai_bubble"}),
        ("Amazon ramps Trainium2; custom silicon gains share", {"custom_chips"}),
        ("Google's Tensor Processing Unit business grows", {"tpu"}),
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
    once = matcher.match(["Nvidia reports on Wednesday"])[0][0].relevance
    thrice = matcher.match(["Nvidia, Nvidia and Nvidia again"])[0][0].relevance
    in_title = matcher.match(["Nvidia reports on Wednesday"], titles=["Nvidia reports"])[0][0].relevance
    assert 0.5 <= once < thrice <= 1
    assert once < in_title <= 1
    assert names(matcher, "Nvidia, Nvidia and Nvidia again") == {"nvidia"}


def test_overlapping_aliases_count_once() -> None:
    matcher = TopicMatcher({"tpu": TopicConfig(keywords=["tpu", "tpus"])})
    (match,) = matcher.match(["Google sells TPUs"])[0]
    assert match.relevance == keyword_relevance(1, False)


def test_relevance_mappings_are_bounded() -> None:
    assert similarity_relevance(-0.3, 0.45) == 0
    assert similarity_relevance(0.45, 0.45) == pytest.approx(0.5)
    assert similarity_relevance(1.0, 0.45) == pytest.approx(1.0)
    assert 0 < similarity_relevance(0.2, 0.45) < 0.5
    # multilingual-e5 cosines sit high: relevance starts at a floor
    assert similarity_relevance(0.75, 0.83, 0.75) == 0
    assert similarity_relevance(0.83, 0.83, 0.75) == pytest.approx(0.5)
    assert similarity_relevance(1.0, 0.83, 0.75) == pytest.approx(1.0)
    assert 0 < similarity_relevance(0.8, 0.83, 0.75) < 0.5
    assert keyword_relevance(0, True) == 0
    assert keyword_relevance(10, True) == 1.0


def test_similarity_finds_a_topic_without_its_keywords(classifier) -> None:  # noqa: ANN001
    encoder = classifier.topics.encoder
    topics = {
        "ai_bubble": TopicConfig(
            keywords=["ai bubble"],
            description="Warnings that AI stocks are overvalued, a speculative bubble like the dot-com era",
            examples=[
                "Michael Burry bets against AI stocks, warns of a bubble",
                "Investors fear AI valuations look like 1999",
            ],
        ),
        "tpu": TopicConfig(
            keywords=["tpu"],
            description="Google's tensor processing units, AI accelerator chips",
            examples=["Google pitches its TPUs to Meta"],
        ),
    }
    matcher = TopicMatcher(topics, encoder, topic_threshold=0.5, similarity_threshold=0.45)
    (matches,) = matcher.match(["Hedge funds warn tech valuations resemble the 2000 crash"])
    assert [m.name for m in matches] == ["ai_bubble"]
    assert matches[0].keywords == () and matches[0].similarity >= 0.45
    # Unrelated text gets nothing; Chinese text uses keywords only (the encoder is English).
    assert matcher.match(["Coffee prices climb on weak Brazilian harvest"])[0] == []
    (zh,) = matcher.match(["市场担忧估值过高"], languages=["zh"])
    assert zh == []
