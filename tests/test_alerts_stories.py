"""Alerts on evidence: windows count stories (not copies) and publishers, coverage share, explanations.

Real databases (SQLite and PostgreSQL through the `engine` fixture); articles are placed in stories by the
real stories stage (text matching: syndicated copies share a headline, independent reports do not).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import TOPICS, make_settings
from seed import SeedArticle, seed
from sqlmodel import Session

from monitor.alerts import RuleEngine, fingerprint, replay
from monitor.alerts.metrics import Measurement, clears
from monitor.alerts.replay import StorySeriesStats
from monitor.cli import cli
from monitor.config import AlertRuleConfig, StoriesConfig
from monitor.notify.message import render_console, render_slack
from monitor.store import alerts as alert_store
from monitor.store.stories import StoryFilter, list_stories, majority_label
from monitor.store.tables import Alert, AlertEvent, Notification, Story, StoryArticle
from monitor.store.windows import coverage_total, topic_series, topic_window_stats
from monitor.stories import StoryStage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
PUBLISHERS = [
    "reuters.com",
    "finance.yahoo.com",
    "marketwatch.com",
    "cnbc.com",
    "investing.com",
    "barrons.com",
    "theregister.com",
    "ft.com",
    "wsj.com",
    "bloomberg.com",
]
STORM = "Nvidia plunges as Google signs TPU deal with Meta"
INDEPENDENT = [
    "Analysts cut Nvidia price targets on weaker gaming outlook",
    "Nvidia China revenue collapses after new export curbs",
    "Hedge funds dump Nvidia shares ahead of quarterly earnings",
    "Microsoft expands Maia accelerator rollout, trimming Nvidia orders",
    "Nvidia Blackwell servers delayed by overheating racks",
    "Amazon Trainium2 wins Anthropic workloads away from Nvidia GPUs",
    "Nvidia faces antitrust probe in Brussels over CUDA licensing",
    "Short sellers pile into Nvidia options before Jensen Huang keynote",
    "Nvidia supplier TSMC warns of CoWoS packaging shortfall",
    "Nvidia data center growth slows as hyperscalers pause spending",
]
BACKGROUND = [
    "Nvidia publishes annual sustainability report",
    "Nvidia hires former Intel executive to run networking",
    "Nvidia Omniverse adds support for factory digital twins",
    "Nvidia shareholders approve board slate at annual meeting",
    "Nvidia research paper wins award at graphics conference",
    "Nvidia launches Jetson module for small robots",
    "Nvidia opens applications for startup accelerator programme",
    "Nvidia updates Shield TV streaming box software",
    "Nvidia and Foxconn break ground on Mexican assembly plant",
    "Nvidia schedules developer conference dates for spring",
]
CALM = [
    "Nvidia opens new engineering campus in Taipei",
    "Nvidia releases updated CUDA toolkit for developers",
    "Nvidia partners with Mercedes on in-car assistant",
    "Nvidia GeForce driver adds support for new games",
    "Nvidia sponsors university robotics competition",
]

DROP = {
    "name": "nvidia-drop",
    "topic": "nvidia",
    "metric": "mean_sentiment",
    "window": "6h",
    "below": -0.3,
    "clear": -0.1,
    "min_articles": 5,
    "for": "0s",
    "severity": "critical",
}
SPIKE = {
    "name": "nvidia-spike",
    "topic": "nvidia",
    "metric": "volume_ratio",
    "window": "2h",
    "baseline": "10h",
    "above": 3.0,
    "clear": 1.5,
    "min_articles": 5,
    "for": "0s",
}


def article(title: str, at: datetime, sentiment: float, publisher: str, topic: str = "nvidia") -> SeedArticle:
    return SeedArticle(title, at, {topic: sentiment}, url=f"https://{publisher}/{abs(hash((title, at)))}")


def place(engine: sa.engine.Engine, articles: list[SeedArticle]) -> list[int]:
    """Store the articles and place them in stories, as the pipeline does after scoring."""
    ids = seed(engine, articles)
    StoryStage(StoriesConfig(), engine).rebuild()
    return ids


def storm(at: datetime, sentiment: float = -0.8, copies: int = 10) -> list[SeedArticle]:
    """One negative story carried by `copies` publishers, a minute apart (syndicated wire copy)."""
    return [
        article(f"{STORM} - {PUBLISHERS[i].split('.')[0].title()}", at + i * MIN, sentiment - i * 0.01, pub)
        for i, pub in enumerate(PUBLISHERS[:copies])
    ]


def independent(at: datetime, sentiment: float = -0.8, n: int = 10) -> list[SeedArticle]:
    """`n` different negative stories from different publishers."""
    return [
        article(INDEPENDENT[i], at + i * MIN, sentiment - i * 0.01, PUBLISHERS[i % len(PUBLISHERS)])
        for i in range(n)
    ]


def calm(at: datetime, sentiment: float = 0.3) -> list[SeedArticle]:
    return [article(title, at + i * MIN, sentiment, PUBLISHERS[i]) for i, title in enumerate(CALM)]


def evaluate(engine: sa.engine.Engine, tmp_path: Path, rule: dict, at: datetime) -> list:
    return RuleEngine(make_settings(tmp_path, alerts=[rule]), engine).evaluate(at)


def alert_row(engine: sa.engine.Engine) -> Alert:
    with Session(engine) as session:
        return session.execute(sa.select(Alert)).scalars().one()


def payloads(engine: sa.engine.Engine) -> list[dict]:
    with Session(engine) as session:
        rows = session.execute(sa.select(Notification).order_by(Notification.id)).scalars()
        return [json.loads(row.payload) for row in rows]


# ----------------------------------------------------------------------------- stories, not copies


def test_a_copy_storm_is_one_story(engine: sa.engine.Engine) -> None:
    place(engine, calm(T0) + storm(T0 + 30 * MIN))
    assert len(list_stories(engine, StoryFilter(topic="nvidia", since=T0 - MIN))) == 6
    with Session(engine) as session:
        stories = topic_window_stats(session, "nvidia", T0 - MIN, T0 + 2 * 60 * MIN, "stories", sources=True)
        articles = topic_window_stats(session, "nvidia", T0 - MIN, T0 + 2 * 60 * MIN, "articles", True)
    assert (stories.count, stories.articles, stories.sources) == (6, 15, 10)
    assert (stories.negative, stories.positive) == (1, 5)  # the storm votes once
    assert stories.mean == pytest.approx((5 * 0.3 + sum(-0.8 - i * 0.01 for i in range(10)) / 10) / 6)
    assert (articles.count, articles.articles, articles.sources) == (15, 15, 10)
    assert (articles.negative, articles.positive) == (10, 5)


def scenario(rule: dict, burst: list[SeedArticle]) -> list[SeedArticle]:
    """The burst at T0+30m, against calm stories: in the window (sentiment) or in the baseline (volume)."""
    if rule["metric"] == "volume_ratio":  # the 10h baseline before the 2h window: one calm story an hour
        return [
            article(title, T0 - (10 - i) * 60 * MIN, 0.3, PUBLISHERS[i]) for i, title in enumerate(BACKGROUND)
        ] + burst
    return calm(T0) + burst


@pytest.mark.parametrize("rule", [DROP, SPIKE], ids=["mean_sentiment", "volume_ratio"])
def test_copy_storm_fires_only_when_counting_articles(
    engine: sa.engine.Engine, tmp_path: Path, rule: dict
) -> None:
    place(engine, scenario(rule, storm(T0 + 30 * MIN)))
    by_stories = {**rule, "count": "stories"}
    by_articles = {**rule, "name": f"{rule['name']}-articles", "count": "articles"}
    fired = RuleEngine(make_settings(tmp_path, alerts=[by_stories, by_articles]), engine).evaluate(
        T0 + 60 * MIN
    )
    assert [e.rule for e in fired] == [by_articles["name"]]
    with Session(engine) as session:
        counts = dict(session.execute(sa.select(Alert.rule, Alert.article_count)).all())
    assert counts[rule["name"]] == (6 if rule["metric"] == "mean_sentiment" else 1)  # the storm: one story
    assert counts[by_articles["name"]] == (15 if rule["metric"] == "mean_sentiment" else 10)


@pytest.mark.parametrize("rule", [DROP, SPIKE], ids=["mean_sentiment", "volume_ratio"])
def test_independent_coverage_fires_when_counting_stories(
    engine: sa.engine.Engine, tmp_path: Path, rule: dict
) -> None:
    place(engine, scenario(rule, independent(T0 + 30 * MIN)))
    fired = evaluate(engine, tmp_path, {**rule, "count": "stories"}, T0 + 60 * MIN)
    assert len(fired) == 1
    assert alert_row(engine).article_count == (15 if rule["metric"] == "mean_sentiment" else 10)


def test_unplaced_articles_count_as_stories_of_their_own(engine: sa.engine.Engine) -> None:
    seed(engine, storm(T0))  # stored and scored, not yet placed
    with Session(engine) as session:
        unplaced = topic_window_stats(session, "nvidia", T0 - MIN, T0 + 60 * MIN, "stories", sources=True)
    assert (unplaced.count, unplaced.articles, unplaced.sources) == (10, 10, 10)
    StoryStage(StoriesConfig(), engine).rebuild()
    with Session(engine) as session:
        placed = topic_window_stats(session, "nvidia", T0 - MIN, T0 + 60 * MIN, "stories", sources=True)
    assert (placed.count, placed.articles, placed.sources) == (1, 10, 10)


def test_story_votes_in_sql_follow_majority_label_as_replay_does(engine: sa.engine.Engine) -> None:
    """Every mix of up to two negative, neutral and positive copies: the SQL window and the replay's
    (which calls `majority_label`) agree on each story's vote, ties included (a tie is neutral)."""
    labels = {"negative": -0.6, "neutral": 0.0, "positive": 0.6}
    mixes = [m for m in itertools.product(range(3), repeat=3) if any(m)]
    articles, groups = [], []
    for index, mix in enumerate(mixes):
        copies = [label for label, n in zip(labels, mix, strict=True) for _ in range(n)]
        groups.append(len(copies))
        for k, label in enumerate(copies):
            at = T0 + (index * 6 + k) * MIN
            articles.append(article(f"mix {index} copy {k}", at, labels[label] + k * 0.01, PUBLISHERS[k]))
    ids = seed(engine, articles)
    _place_by_hand(engine, ids, groups[:-3])  # the last three mixes stay unplaced: stories of their own
    start, end = T0 - MIN, T0 + 24 * 60 * MIN
    with Session(engine) as session:
        live = topic_window_stats(session, "nvidia", start, end, "stories", sources=True)
        replayed = StorySeriesStats(topic_series(session, "nvidia", start, end))(start, end)
    assert live.count == replayed.count == len(mixes) - 3 + sum(groups[-3:])
    assert (live.negative, live.positive, live.articles, live.sources) == (
        replayed.negative,
        replayed.positive,
        replayed.articles,
        replayed.sources,
    )
    assert live.sentiment_sum == pytest.approx(replayed.sentiment_sum)
    votes = [
        majority_label(label for label, n in zip(labels, mix, strict=True) for _ in range(n))
        for mix in mixes[:-3]
    ]
    unplaced = mixes[-3:]  # each copy is a story of its own, with its own label
    assert live.negative == votes.count("negative") + sum(m[0] for m in unplaced)
    assert live.positive == votes.count("positive") + sum(m[2] for m in unplaced)


def _place_by_hand(engine: sa.engine.Engine, ids: list[int], groups: list[int]) -> None:
    """Consecutive articles form one story per group (the clusterer is not under test here)."""
    stories, members = Story.__table__, StoryArticle.__table__
    with engine.begin() as connection:
        position = 0
        for size in groups:
            story_id = connection.execute(
                sa.insert(stories)
                .values(
                    first_seen=T0, last_seen=T0, headline=f"story {position}", articles=size, sources=size
                )
                .returning(stories.c.id)
            ).scalar_one()
            for k in range(size):
                article_id = ids[position + k]
                connection.execute(
                    sa.insert(members).values(
                        article_id=article_id,
                        story_id=story_id,
                        novel=k == 0,
                        source=PUBLISHERS[k],
                        happened_at=T0,
                    )
                )
            position += size


# ----------------------------------------------------------------------------- min_sources


def test_min_sources_blocks_firing_until_enough_publishers(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rule = {**DROP, "min_sources": 3, "repeat": "1h"}
    # Six different negative stories, all from one publisher: enough stories, one source.
    place(engine, [article(INDEPENDENT[i], T0 + i * MIN, -0.7, "reuters.com") for i in range(6)])
    rules = RuleEngine(make_settings(tmp_path, alerts=[rule]), engine)
    assert rules.evaluate(T0 + 10 * MIN) == []
    assert alert_row(engine).state == "inactive"
    # A second publisher: still short of three.
    place(engine, [article(INDEPENDENT[6], T0 + 11 * MIN, -0.7, "cnbc.com")])
    assert rules.evaluate(T0 + 12 * MIN) == []
    # A third: fires.
    place(engine, [article(INDEPENDENT[7], T0 + 13 * MIN, -0.7, "ft.com")])
    fired = rules.evaluate(T0 + 14 * MIN)
    assert len(fired) == 1
    fired_payload = payloads(engine)[0]
    assert (fired_payload["stories"], fired_payload["sources"], fired_payload["min_sources"]) == (8, 3, 3)


def test_min_sources_never_blocks_clearing(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rule = {**DROP, "min_sources": 3, "window": "1h"}
    place(engine, [article(INDEPENDENT[i], T0 + i * MIN, -0.7, PUBLISHERS[i]) for i in range(6)])
    rules = RuleEngine(make_settings(tmp_path, alerts=[rule]), engine)
    assert len(rules.evaluate(T0 + 10 * MIN)) == 1
    # An hour on, the window holds only positive stories from a single publisher: it resolves.
    place(engine, [article(CALM[i], T0 + (50 + i) * MIN, 0.6, "reuters.com") for i in range(5)])
    resolved = rules.evaluate(T0 + 65 * MIN)
    assert len(resolved) == 1 and alert_row(engine).state == "resolved"
    rule_cfg = AlertRuleConfig.model_validate(rule)
    m = Measurement(0.5, 5, True, T0, T0, sources=1, sources_ok=False)
    assert clears(rule_cfg, m)


# ----------------------------------------------------------------------------- coverage share


def _coverage_articles() -> list[SeedArticle]:
    """3 bubble stories (one also about nvidia), 4 other nvidia stories, 2 TPU stories, one 10-copy storm."""
    bubble = [
        SeedArticle(
            "Burry warns AI bubble mirrors dot-com excess", T0, {"ai_bubble": -0.7}, url="https://ft.com/b1"
        ),
        SeedArticle(
            "Circular financing props up Nvidia valuation, AI bubble fears grow",
            T0 + MIN,
            {"ai_bubble": -0.6, "nvidia": -0.4},
            url="https://wsj.com/b2",
        ),
        SeedArticle(
            "Investors shrug off AI bubble talk as chip stocks rally",
            T0 + 2 * MIN,
            {"ai_bubble": 0.2},
            url="https://cnbc.com/b3",
        ),
    ]
    nvidia = [article(INDEPENDENT[i], T0 + (3 + i) * MIN, -0.5, PUBLISHERS[i]) for i in range(4)]
    tpu = [
        article("Google Ironwood TPU reaches general availability", T0 + 10 * MIN, 0.6, "reuters.com", "tpu"),
        article("Meta tests TPUs in its own data centers", T0 + 11 * MIN, 0.5, "bloomberg.com", "tpu"),
    ]
    return bubble + nvidia + tpu + storm(T0 + 20 * MIN)


def test_coverage_share_is_the_topics_stories_over_all_topic_stories(
    engine: sa.engine.Engine, tmp_path: Path
) -> None:
    place(engine, _coverage_articles())
    now = T0 + 60 * MIN
    with Session(engine) as session:
        assert coverage_total(session, list(TOPICS), now - timedelta(hours=6), now, "stories") == 10
        assert coverage_total(session, list(TOPICS), now - timedelta(hours=6), now, "articles") == 19
    rule = {
        "name": "bubble-index",
        "topic": "ai_bubble",
        "metric": "coverage_share",
        "window": "6h",
        "above": 0.25,
        "clear": 0.15,
        "min_articles": 3,
        "for": "0s",
    }
    fired = evaluate(engine, tmp_path, rule, now)
    assert len(fired) == 1 and fired[0].value == pytest.approx(3 / 10)
    payload = payloads(engine)[0]
    assert payload["coverage_total"] == 10 and payload["count"] == 3
    assert payload["headline_order"] == "most_covered"
    text, blocks = render_slack(payload)
    summary = blocks[1]["text"]["text"]
    assert "*Coverage share* is *30%*" in summary and "≥ 25%" in summary
    assert "ai_bubble is in *3* of the 10 stories on any watched topic" in summary
    # Counting articles, the storm's copies swell the denominator: 3 of 19.
    by_articles = {**rule, "name": "bubble-index-articles", "count": "articles"}
    assert RuleEngine(make_settings(tmp_path, alerts=[rule, by_articles]), engine).evaluate(now) == []
    with Session(engine) as session:
        value = session.execute(sa.select(Alert.value).where(Alert.rule == "bubble-index-articles")).scalar()
    assert value == pytest.approx(3 / 19)


# ----------------------------------------------------------------------------- replay agrees with live


REPLAY_RULES = [
    {**DROP, "window": "2h", "min_articles": 3, "min_sources": 2, "for": "20m", "repeat": "3h"},
    {**SPIKE, "window": "1h", "baseline": "3h", "above": 2.5, "clear": 1.2, "min_articles": 3, "for": "20m"},
    {
        "name": "bubble-index",
        "topic": "ai_bubble",
        "metric": "coverage_share",
        "window": "2h",
        "above": 0.4,
        "clear": 0.2,
        "min_articles": 2,
        "for": "20m",
    },
]


def _history() -> list[SeedArticle]:
    """Ten hours on a 20-minute grid: calm stories, a copy storm, independent bad news, bubble talk."""
    out: list[SeedArticle] = []
    for slot in range(30):
        at = T0 + slot * 20 * MIN
        phase = slot // 6
        if phase in (0, 4):
            out.append(article(f"{CALM[slot % 5]} ({slot})", at, 0.3, PUBLISHERS[slot % 10]))
        elif phase == 1:  # one storm: a story and its copies, each slot another publisher
            out.append(article(f"{STORM} - {PUBLISHERS[slot % 10]}", at, -0.8, PUBLISHERS[slot % 10]))
            out.append(article(f"{CALM[slot % 5]} ({slot})", at, 0.2, PUBLISHERS[(slot + 3) % 10]))
        elif phase in (2, 3):  # independent negative stories, some from the same publisher
            out.append(article(f"{INDEPENDENT[slot % 10]} ({slot})", at, -0.6, PUBLISHERS[slot % 3]))
        if slot % 4 == 0 or 18 <= slot <= 23:
            out.append(
                article(f"AI bubble warning number {slot} from strategists", at, -0.5, "ft.com", "ai_bubble")
            )
    return out


REPLAY_RULES.append(
    {**REPLAY_RULES[0], "name": "nvidia-drop-articles", "count": "articles", "min_sources": 3}
)


@pytest.mark.parametrize(
    "rule", REPLAY_RULES, ids=[f"{r['metric']}-{r.get('count', 'stories')}" for r in REPLAY_RULES]
)
def test_replay_matches_live_evaluation_counting_stories(
    engine: sa.engine.Engine, tmp_path: Path, rule: dict
) -> None:
    place(engine, _history())
    settings = make_settings(tmp_path, alerts=[rule])
    end = T0 + 12 * 60 * MIN
    replayed = [(e.kind, e.at, round(e.value or 0, 9)) for e in replay(settings, engine, T0, end)]
    rules = RuleEngine(settings, engine)
    t = T0
    while t <= end:
        rules.evaluate(t)
        t += 10 * MIN
    fp = fingerprint(rule["name"], rule["topic"])
    with Session(engine) as session:
        live = [
            (e.kind, e.at, round(e.value or 0, 9)) for e in alert_store.events(session, fingerprints=[fp])
        ]
    assert live == replayed
    assert any(kind == "fired" for kind, _, _ in live)


# ----------------------------------------------------------------------------- explanations


def test_the_alert_explains_itself(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rule = {**DROP, "min_sources": 3, "repeat": "1h"}
    place(engine, independent(T0, n=5) + storm(T0 + 10 * MIN))
    rules = RuleEngine(make_settings(tmp_path, alerts=[rule]), engine)
    assert len(rules.evaluate(T0 + 30 * MIN)) == 1

    with Session(engine) as session:
        fired_event = session.execute(sa.select(AlertEvent)).scalars().one()
    detail = json.loads(fired_event.detail)
    assert (detail["stories"], detail["articles"], detail["sources"]) == (6, 15, 10)
    assert detail["threshold"] == -0.3 and detail["clear_level"] == -0.1 and detail["unit"] == "stories"
    headlines = detail["headlines"]
    assert len(headlines) == 5 and [h["title"] for h in headlines].count(headlines[0]["title"]) == 1
    storm_line = next(h for h in headlines if h["title"].startswith(STORM))
    assert storm_line["sources"] == 10 and storm_line["articles"] == 10
    assert storm_line["url"].startswith("https://reuters.com/")  # the first copy's link

    fired = payloads(engine)[0]
    text, blocks = render_slack(fired)
    summary = blocks[1]["text"]["text"]
    assert "*Mean sentiment* is" in summary and "threshold ≤ -0.30, clears above -0.10" in summary
    assert "Evidence: *6 stories* from *10 sources*, 15 articles (copies of one story count once)" in summary
    assert "fires with ≥ 5 stories and ≥ 3 sources" in summary
    assert blocks[2]["text"]["text"] == "*Top stories* (most negative first)"
    lines = [b["text"]["text"] for b in blocks[3:] if b["type"] == "section"]
    assert any(STORM in line and "_reuters.com_ +9 more sources, 10 articles" in line for line in lines)
    assert sum(STORM in line for line in lines) == 1  # one line for the storm, not ten copies
    assert "6 stories from 10 sources (15 articles)" in text and "(10 sources)" in text

    # An hour later, a reminder: what changed since the fired notice.
    place(engine, [article(INDEPENDENT[7], T0 + 60 * MIN, -0.9, "wsj.com")])
    assert len(rules.evaluate(T0 + 90 * MIN)) == 1
    reminder = payloads(engine)[1]
    assert reminder["previous"]["kind"] == "fired" and reminder["new_stories"] == 1
    summary = render_slack(reminder)[1][1]["text"]["text"]
    assert "Since the last notice (fired 2026-03-02 09:30 UTC)" in summary
    assert "stories 6 → 7" in summary and "1 new story" in summary
    assert any(h.get("new") for h in reminder["headlines"])

    # The news turns: the resolved notice explains too.
    place(
        engine,
        [
            article(title, T0 + (100 + i) * MIN, 0.9, PUBLISHERS[i % 10])
            for i, title in enumerate(CALM + BACKGROUND)
        ],
    )
    assert len(rules.evaluate(T0 + 120 * MIN)) == 1
    resolved = payloads(engine)[2]
    console = render_console(resolved)
    assert "RESOLVED" in console and "the metric is back past its clear level" in console
    assert "Since the last notice (reminder" in console and "Top stories (most positive first)" in console


def test_alerts_show_prints_the_explanation(engine: sa.engine.Engine, tmp_path: Path) -> None:
    rule = {**DROP, "min_sources": 3}
    place(engine, independent(T0, n=5) + storm(T0 + 10 * MIN))
    config = tmp_path / "monitor.yaml"
    url = engine.url.render_as_string(hide_password=False)
    config.write_text(json.dumps({"database_url": url, "topics": TOPICS, "alerts": [rule]}), encoding="utf-8")
    assert len(RuleEngine(make_settings(tmp_path, alerts=[rule]), engine).evaluate(T0 + 30 * MIN)) == 1

    listed = CliRunner().invoke(
        cli, ["--config", str(config), "alerts", "--since", "3000d", "--format", "json"]
    )
    [episode] = json.loads(listed.stdout)
    assert (episode["stories"], episode["articles"], episode["sources"]) == (6, 15, 10)

    shown = CliRunner().invoke(cli, ["--config", str(config), "alerts", "show", str(episode["id"])])
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "Mean sentiment is -0.82" in out and "threshold ≤ -0.30, clears above -0.10" in out
    assert "Evidence: 6 stories from 10 sources, 15 articles" in out
    assert f"{STORM} - Reuters  [reuters.com +9 more sources, 10 articles]" in out
    assert "Episode: fired" in out and "Notification 1: pending" in out

    as_json = CliRunner().invoke(
        cli, ["--config", str(config), "alerts", "show", str(episode["id"]), "--format", "json"]
    )
    assert json.loads(as_json.stdout)["explanation"]["sources"] == 10
    missing = CliRunner().invoke(cli, ["--config", str(config), "alerts", "show", "999"])
    assert missing.exit_code == 2 and "no alert event 999" in missing.output


def test_api_explains_an_alert_event(engine: sa.engine.Engine, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from monitor.api.app import create_app

    rule = {**DROP, "min_sources": 3}
    place(engine, independent(T0, n=5) + storm(T0 + 10 * MIN))
    settings = make_settings(
        tmp_path, database_url=engine.url.render_as_string(hide_password=False), alerts=[rule]
    )
    assert len(RuleEngine(settings, engine).evaluate(T0 + 30 * MIN)) == 1
    client = TestClient(create_app(settings, engine))
    [episode] = client.get("/api/alerts", params={"since": "3000d"}).json()["items"]
    assert (episode["stories"], episode["articles"], episode["sources"]) == (6, 15, 10)
    body = client.get(f"/api/alerts/{episode['id']}").json()
    assert body["kind"] == "fired" and body["explanation"]["min_sources"] == 3
    assert body["explanation"]["headlines"][0]["sources"] >= 1
    assert [e["kind"] for e in body["episode"]] == ["fired"]
    assert client.get("/api/alerts/999").status_code == 404


def test_message_lines_for_each_unit_and_baseline() -> None:
    base = {
        "kind": "fired",
        "rule": "r",
        "topic": "nvidia",
        "fingerprint": "f",
        "metric": "volume_ratio",
        "direction": "above",
        "threshold": 3.0,
        "clear": 1.5,
        "value": 4.0,
        "window_seconds": 7200,
        "window_start": "2026-03-02T08:00:00Z",
        "window_end": "2026-03-02T10:00:00Z",
        "baseline_seconds": 36000,
        "baseline_count": 10,
        "baseline_value": 1.0,
        "min_articles": 5,
        "min_sources": 0,
        "unit": "stories",
        "count": 8,
        "stories": 8,
        "articles": 8,
        "sources": 6,
        "headlines": [
            {
                "title": "<!channel> Nvidia & co",
                "url": "https://x.test/a",
                "source": "<@U1>",
                "score": -0.5,
                "sources": 3,
                "articles": 4,
            },
        ],
    }
    text, blocks = render_slack(base)
    summary = blocks[1]["text"]["text"]
    assert "Baseline: the 10h before · 1.00 stories/h (10 stories)" in summary
    assert "Evidence: *8 stories* from *6 sources*, 8 articles · fires with ≥ 5 stories" in summary
    line = blocks[3]["text"]["text"]
    assert "&lt;!channel&gt; Nvidia &amp; co" in line and "_&lt;@U1&gt;_ +2 more sources, 4 articles" in line
    assert "<!channel>" not in text + json.dumps(blocks) and "<@U1>" not in text + json.dumps(blocks)
    by_articles = {
        **base,
        "unit": "articles",
        "count": 20,
        "articles": 20,
        "metric": "sentiment_shift",
        "direction": "below",
        "threshold": -0.3,
        "clear": -0.1,
        "value": -0.4,
        "baseline_value": 0.1,
    }
    summary = render_slack(by_articles)[1][1]["text"]["text"]
    assert "20 articles (every copy counts) · fires with ≥ 5 articles" in summary
    assert "Baseline: the 10h before · mean +0.10 (10 articles)" in summary
