"""Stories: syndicated copies, edited headlines and translations join one story; unrelated news never does.

The stage runs for real on SQLite and PostgreSQL, with its real meaning embedder (multilingual-e5-small).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from seed import SeedArticle, seed

from monitor.config import StoriesConfig
from monitor.events import ArticleScored, TopicScore
from monitor.store.stories import StoryFilter, get_story, list_stories, story_of_articles
from monitor.stories import StoryStage
from monitor.stories._text import Features, strip_decoration

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def scored(ids: list[int]) -> list[ArticleScored]:
    return [
        ArticleScored(
            article_id=i,
            label="neutral",
            score=0.0,
            confidence=0.9,
            model="test@1",
            topics=(TopicScore("nvidia", 0.9, 0.0),),
        )
        for i in ids
    ]


def place(engine, articles: list[SeedArticle], stage: StoryStage | None = None):  # noqa: ANN001, ANN201
    ids = seed(engine, articles)
    stage = stage or StoryStage(StoriesConfig(), engine)
    events = stage.assign(scored(ids), now=max(a.at for a in articles))
    by_id = {e.article_id: e for e in events}
    return ids, [by_id[i] for i in ids], stage


def test_publisher_suffix_and_wire_tags_are_not_the_headline() -> None:
    assert strip_decoration("Nvidia slides as Google pitches TPUs to Meta - Reuters") == (
        "Nvidia slides as Google pitches TPUs to Meta"
    )
    assert strip_decoration("UPDATE 2-Nvidia slides as Google pitches TPUs to Meta | Yahoo Finance") == (
        "Nvidia slides as Google pitches TPUs to Meta"
    )
    assert strip_decoration("【快讯】英伟达盘后跌逾3%，谷歌TPU洽谈进入Meta数据中心（财联社）").startswith(
        "英伟达"
    )
    assert not Features.of("Nvidia", "").enough
    assert not Features.of("快讯", "").enough


def test_syndicated_copies_form_one_story_with_their_sources(engine) -> None:  # noqa: ANN001
    copies = [
        SeedArticle(
            "Nvidia slides as Google pitches TPUs to Meta - Reuters",
            T0,
            {"nvidia": -0.6},
            url="https://www.reuters.com/a",
        ),
        SeedArticle(
            "Nvidia slides as Google pitches TPUs to Meta | Yahoo Finance",
            T0 + timedelta(minutes=20),
            {"nvidia": -0.5},
            url="https://finance.yahoo.com/b",
        ),
        SeedArticle(
            "UPDATE 1-Nvidia shares slide as Google pitches TPUs to Meta",
            T0 + timedelta(hours=2),
            {"nvidia": -0.7},
            url="https://www.marketwatch.com/c",
        ),
        SeedArticle(
            "TSMC lifts 2026 capex guidance to $48 billion", T0 + timedelta(minutes=5), {}, feed="reuters"
        ),
    ]
    ids, events, _stage = place(engine, copies)
    assert events[0].novel and not events[1].novel and not events[2].novel
    assert events[0].story_id == events[1].story_id == events[2].story_id
    assert events[3].story_id != events[0].story_id and events[3].novel
    story, members = get_story(engine, events[0].story_id)
    assert story.articles == 3 and story.sources == 3
    assert story.headline.startswith("Nvidia slides")
    assert set(story.source_names) == {"reuters.com", "finance.yahoo.com", "marketwatch.com"}
    assert [m["novel"] for m in members] == [True, False, False]
    [vote] = story.topics
    assert vote.topic == "nvidia" and vote.articles == 3 and vote.label == "negative"
    assert story_of_articles(engine, ids[:2]) == {
        ids[0]: (events[0].story_id, True),
        ids[1]: (events[0].story_id, False),
    }


def test_unrelated_items_sharing_boilerplate_or_short_titles_stay_apart(engine) -> None:  # noqa: ANN001
    articles = [
        SeedArticle("Nvidia", T0, {}, summary="Read more…"),
        SeedArticle("Nvidia", T0 + timedelta(minutes=1), {}, summary="Read more…"),
        SeedArticle("Update", T0 + timedelta(minutes=2), {}),
        SeedArticle("Update", T0 + timedelta(minutes=3), {}),
        SeedArticle(
            "Broadcom wins fourth hyperscaler ASIC customer",
            T0 + timedelta(minutes=4),
            {},
            summary="Click here for the full story on our website and more market news every day",
        ),
        SeedArticle(
            "Samsung HBM4 passes Nvidia qualification tests",
            T0 + timedelta(minutes=5),
            {},
            summary="Click here for the full story on our website and more market news every day",
        ),
    ]
    _ids, events, _stage = place(engine, articles)
    assert len({e.story_id for e in events}) == len(articles)
    assert all(e.novel for e in events)


def test_same_words_different_figures_or_days_are_different_stories(engine) -> None:  # noqa: ANN001
    articles = [
        SeedArticle("Nvidia shares rise 2.5% in early trading on AI demand", T0, {"nvidia": 0.5}),
        SeedArticle(
            "Nvidia shares rise 4.1% in early trading on AI demand", T0 + timedelta(hours=20), {"nvidia": 0.5}
        ),
        SeedArticle(
            "Nvidia shares rise 2.5% in early trading on AI demand", T0 + timedelta(days=3), {"nvidia": 0.5}
        ),
    ]
    _ids, events, _stage = place(engine, articles)
    assert len({e.story_id for e in events}) == 3


def test_a_story_drifting_over_days_starts_anew_after_the_window(engine) -> None:  # noqa: ANN001
    stage = StoryStage(StoriesConfig(window=timedelta(hours=48)), engine)
    day = [
        SeedArticle(
            f"Nvidia export curbs on H20 chips to China tighten, day {n} of talks", T0 + timedelta(days=n), {}
        )
        for n in range(5)
    ]
    _ids, events, _stage = place(engine, day, stage)
    first = events[0].story_id
    assert events[1].story_id == first and events[2].story_id == first  # within 48 h of the first
    assert events[3].story_id != first  # 72 h later: a new story


def test_a_translation_joins_by_meaning(engine) -> None:  # noqa: ANN001
    texts = [
        "Nvidia shares slide as Google pitches its TPUs to Meta for data centers",
        "英伟达股价下滑，谷歌向Meta推销其TPU用于数据中心",
        "TSMC raises its 2026 capital spending plan to expand advanced packaging",
    ]
    articles = [
        SeedArticle(texts[0], T0, {"nvidia": -0.5}),
        SeedArticle(texts[1], T0 + timedelta(hours=1), {"nvidia": -0.5}, language="zh"),
        SeedArticle(texts[2], T0 + timedelta(hours=2), {}),
    ]
    _ids, events, _stage = place(engine, articles)
    assert events[1].story_id == events[0].story_id and events[1].basis == "meaning"
    assert events[2].story_id != events[0].story_id


def test_two_processes_share_one_set_of_stories(engine) -> None:  # noqa: ANN001
    a, b = StoryStage(StoriesConfig(), engine), StoryStage(StoriesConfig(), engine)
    _ids, first, _ = place(
        engine, [SeedArticle("Anthropic signs deal for one million Google TPUs", T0, {})], a
    )
    _ids, second, _ = place(
        engine,
        [
            SeedArticle(
                "Anthropic signs deal for one million Google TPUs - CNBC", T0 + timedelta(minutes=9), {}
            )
        ],
        b,
    )
    assert second[0].story_id == first[0].story_id and not second[0].novel


def test_rebuild_places_history_again_and_keeps_counts_coherent(engine) -> None:  # noqa: ANN001
    articles = [
        SeedArticle("Micron sells out 2026 HBM supply as AI demand surges", T0, {}),
        SeedArticle(
            "Micron sells out 2026 HBM supply as AI demand surges - Bloomberg", T0 + timedelta(hours=1), {}
        ),
        SeedArticle("Intel delays Ohio fab opening to 2031", T0 + timedelta(hours=2), {}),
    ]
    seed(engine, articles)  # stored before stories existed: no placements
    assert list_stories(engine, StoryFilter()) == []
    stage = StoryStage(StoriesConfig(), engine)
    assert stage.rebuild() == 3
    stories = list_stories(engine, StoryFilter())
    assert sorted(s.articles for s in stories) == [1, 2]
    assert stage.rebuild() == 3  # again: same stories, nothing doubled
    assert sorted(s.articles for s in list_stories(engine, StoryFilter())) == [1, 2]


@pytest.mark.parametrize("search", ["micron", "MICRON"])
def test_list_stories_searches_headlines(engine, search: str) -> None:  # noqa: ANN001
    place(
        engine,
        [
            SeedArticle("Micron sells out 2026 HBM supply as AI demand surges", T0, {}),
            SeedArticle("Intel delays Ohio fab opening to 2031", T0 + timedelta(hours=2), {}),
        ],
    )
    found = list_stories(engine, StoryFilter(search=search))
    assert [s.headline for s in found] == ["Micron sells out 2026 HBM supply as AI demand surges"]
