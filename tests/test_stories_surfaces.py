"""Stories where people see them: `monitor stories` (list, show, rebuild), `/api/stories`, `story_id` and
`novel` on articles, and history counted in stories with its coverage share (the AI-bubble index).

Real databases (SQLite and PostgreSQL), the real `monitor` command through click's runner, the real app
through FastAPI's TestClient. Copies join by their text only (meaning thresholds at 1.0), so the expected
stories do not depend on the meaning model.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import TOPICS, make_settings
from fastapi.testclient import TestClient
from seed import SeedArticle, seed
from sqlalchemy.engine import Engine

from monitor.api import create_app
from monitor.cli import cli
from monitor.config import StoriesConfig
from monitor.store.stories import StoryFilter, list_stories
from monitor.store.story_history import story_history
from monitor.stories import StoryStage

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = (NOW - timedelta(days=1)).replace(minute=0, second=0)
TEXT_ONLY = {"meaning_threshold": 1.0, "cross_language_threshold": 1.0}
WIRE = "Nvidia slides as Google pitches TPUs to Meta"


def _articles() -> list[SeedArticle]:
    return [
        # One wire story, three publishers: one story with three sources.
        SeedArticle(
            f"{WIRE} - Reuters",
            T0 + timedelta(minutes=10),
            {"nvidia": -0.6, "tpu": 0.5},
            url="https://www.reuters.com/a",
        ),
        SeedArticle(
            f"{WIRE} | Yahoo Finance",
            T0 + timedelta(minutes=25),
            {"nvidia": -0.8, "tpu": 0.4},
            url="https://finance.yahoo.com/b",
        ),
        SeedArticle(
            f"UPDATE 1-{WIRE}",
            T0 + timedelta(minutes=50),
            {"nvidia": -0.7, "tpu": 0.6},
            url="https://www.marketwatch.com/c",
        ),
        SeedArticle(
            "Broadcom lands record custom AI chip order from OpenAI",
            T0 + timedelta(hours=2, minutes=5),
            {"custom_chips": 0.7},
        ),
        SeedArticle(
            "AI bubble fears grow as circular financing deals spread",
            T0 + timedelta(hours=2, minutes=30),
            {"ai_bubble": -0.5},
        ),
        SeedArticle(
            "Strategists dismiss AI bubble talk as earnings keep rising",
            T0 + timedelta(hours=5, minutes=10),
            {"ai_bubble": 0.3, "nvidia": 0.4},
        ),
        SeedArticle(
            "Nvidia beats estimates on record data-center revenue", T0 - timedelta(days=3), {"nvidia": 0.8}
        ),
    ]


@pytest.fixture
def placed(engine: Engine) -> Engine:
    """The articles above, stored and placed in stories."""
    seed(engine, _articles())
    StoryStage(StoriesConfig(**TEXT_ONLY), engine).rebuild()
    return engine


def _config(tmp_path: Path, engine: Engine) -> Path:
    path = tmp_path / "monitor.yaml"
    data = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "topics": TOPICS,
        "stories": TEXT_ONLY,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(tmp_path: Path, engine: Engine, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(_config(tmp_path, engine)), *args])


def _ok(tmp_path: Path, engine: Engine, *args: str) -> Result:
    result = _run(tmp_path, engine, *args)
    assert result.exit_code == 0, result.output
    return result


def _json(result: Result) -> list[dict]:
    return json.loads(result.stdout)


def _client(engine: Engine, tmp_path: Path, **overrides: object) -> TestClient:
    settings = make_settings(
        tmp_path, database_url=engine.url.render_as_string(hide_password=False), **overrides
    )
    return TestClient(create_app(settings, engine))


def _wire_story(engine: Engine) -> int:
    [story] = [s for s in list_stories(engine, StoryFilter(limit=100)) if s.articles == 3]
    return story.id


# ----------------------------------------------------------------------------- monitor stories


def test_cli_lists_stories_as_json(placed, tmp_path) -> None:  # noqa: ANN001
    items = _json(_ok(tmp_path, placed, "stories", "--since", "2d", "--format", "json"))
    # Newest first; the story from four days ago is outside --since.
    assert [i["headline"] for i in items] == [
        "Strategists dismiss AI bubble talk as earnings keep rising",
        "AI bubble fears grow as circular financing deals spread",
        "Broadcom lands record custom AI chip order from OpenAI",
        f"{WIRE} - Reuters",
    ]
    wire = items[-1]
    assert {"id", "headline", "first_seen", "articles", "sources", "languages", "topics", "url"} <= set(wire)
    assert wire["articles"] == 3 and wire["sources"] == 3 and wire["languages"] == ["en"]
    assert wire["first_seen"] == (T0 + timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    assert wire["url"] == "https://www.reuters.com/a"
    assert set(wire["source_names"]) == {"reuters.com", "finance.yahoo.com", "marketwatch.com"}
    votes = {t["topic"]: t for t in wire["topics"]}
    assert votes["nvidia"]["sentiment"] == pytest.approx(-0.7)
    assert votes["nvidia"]["label"] == "negative"
    assert (votes["nvidia"]["articles"], votes["nvidia"]["sources"]) == (3, 3)
    assert votes["tpu"]["sentiment"] == pytest.approx(0.5) and votes["tpu"]["label"] == "positive"


def test_cli_filters_sorts_and_searches(placed, tmp_path) -> None:  # noqa: ANN001
    def headlines(*args: str) -> list[str]:
        return [i["headline"] for i in _json(_ok(tmp_path, placed, "stories", "--format", "json", *args))]

    strategists = "Strategists dismiss AI bubble talk as earnings keep rising"
    assert headlines("--since", "2d", "--topic", "nvidia", "--sort", "most_negative") == [
        f"{WIRE} - Reuters",
        strategists,
    ]
    assert headlines("--since", "2d", "--topic", "nvidia", "--sort", "most_positive") == [
        strategists,
        f"{WIRE} - Reuters",
    ]
    assert headlines("--since", "2d", "--sort", "sources", "--limit", "1") == [f"{WIRE} - Reuters"]
    assert len(headlines("--since", "7d")) == 5
    # Search reads every member's title: "Yahoo" is only in the second copy's.
    assert headlines("--since", "2d", "--search", "yahoo") == [f"{WIRE} - Reuters"]
    assert headlines("--since", "2d", "--search", "BROADCOM") == [
        "Broadcom lands record custom AI chip order from OpenAI"
    ]
    until = (T0 + timedelta(hours=1)).isoformat()
    assert headlines("--since", "2d", "--until", until) == [f"{WIRE} - Reuters"]


def test_cli_table_and_csv(placed, tmp_path) -> None:  # noqa: ANN001
    table = _ok(tmp_path, placed, "stories", "--since", "2d", "--topic", "nvidia").stdout
    header, rule, *rows = table.splitlines()
    assert header.split() == ["id", "first_seen", "articles", "sources", "languages", "sentiment", "headline"]
    wire = next(row for row in rows if WIRE in row)
    assert "nvidia -0.70 negative" in wire and "tpu" not in wire  # only the chosen topic's vote
    assert wire.split()[2:5] == ["3", "3", "en"]

    exported = _ok(tmp_path, placed, "stories", "--since", "2d", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert list(rows[0]) == [
        "id",
        "headline",
        "url",
        "first_seen",
        "last_seen",
        "articles",
        "sources",
        "languages",
        "source_names",
        "topics",
    ]
    [row] = [r for r in rows if r["headline"].startswith(WIRE)]
    assert (row["articles"], row["sources"], row["languages"]) == ("3", "3", "en")
    assert row["topics"] == "nvidia:-0.7000:negative;tpu:0.5000:positive"


def test_cli_show_lists_the_articles_and_how_they_joined(placed, tmp_path) -> None:  # noqa: ANN001
    story_id = _wire_story(placed)
    [detail] = _json(_ok(tmp_path, placed, "stories", "show", str(story_id), "--format", "json"))
    assert detail["id"] == story_id and detail["sources"] == 3
    members = detail["members"]
    assert [m["source"] for m in members] == ["reuters.com", "finance.yahoo.com", "marketwatch.com"]
    assert [m["novel"] for m in members] == [True, False, False]
    assert [m["basis"] for m in members] == ["first", "text", "text"]
    assert members[0]["similarity"] == 1.0 and all(0 < m["similarity"] <= 1 for m in members)
    assert [m["language"] for m in members] == ["en", "en", "en"]

    table = _ok(tmp_path, placed, "stories", "show", str(story_id)).stdout
    assert f"story {story_id}: {WIRE} - Reuters" in table
    assert "3 articles from 3 sources" in table and "nvidia: -0.70 negative" in table
    assert table.count(" text ") == 2 and " first " in table

    exported = _ok(tmp_path, placed, "stories", "show", str(story_id), "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert [r["basis"] for r in rows] == ["first", "text", "text"]
    assert rows[1]["url"] == "https://finance.yahoo.com/b"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["stories", "--topic", "amd"], "unknown topic 'amd'"),
        (["stories", "--since", "soon"], "'soon' is neither a duration"),
        (["stories", "--since", "2d", "--until", "3d"], "must be after"),
        (["stories", "--sort", "most_negative"], "give a topic too"),
        (["stories", "--search", "a\x01b"], "control characters"),
        (["stories", "show", "999999"], "no story with id 999999"),
        (["stories", "show", "abc"], "'abc' is not a valid integer"),
    ],
)
def test_cli_bad_input_is_a_clear_error(sqlite_engine, tmp_path, args, needle) -> None:  # noqa: ANN001
    result = _run(tmp_path, sqlite_engine, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_cli_rebuild_places_stored_articles_and_reports_counts(engine, tmp_path) -> None:  # noqa: ANN001
    seed(engine, _articles())  # stored before stories existed
    assert list_stories(engine, StoryFilter()) == []
    result = _ok(tmp_path, engine, "stories", "rebuild")
    assert result.stdout.startswith("placed 7 articles in 5 stories (1 with more than one article)")
    assert "placed 7 articles (" in result.stderr  # progress, per page, on stderr
    again = _ok(tmp_path, engine, "stories", "rebuild", "--since", "2d")
    assert again.stdout.startswith("placed 6 articles in 4 stories (1 with more than one article)")
    assert sorted(s.articles for s in list_stories(engine, StoryFilter(limit=100))) == [1, 1, 1, 1, 3]


def test_cli_rebuild_refuses_when_stories_are_disabled(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    path = _config(tmp_path, sqlite_engine)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["stories"]["enabled"] = False
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "stories", "rebuild"])
    assert result.exit_code == 1 and "stories are disabled" in result.output


# ----------------------------------------------------------------------------- story_id and novel on articles


def test_articles_carry_their_story(placed, tmp_path) -> None:  # noqa: ANN001
    [unplaced] = seed(
        placed, [SeedArticle("TSMC raises capex plan", T0 + timedelta(hours=6), {"nvidia": 0.1})]
    )
    story_id = _wire_story(placed)
    items = _json(_ok(tmp_path, placed, "articles", "--since", "2d", "--format", "json"))
    by_title = {i["title"]: i for i in items}
    assert [
        (by_title[t]["story_id"], by_title[t]["novel"]) for t in (f"{WIRE} - Reuters", f"UPDATE 1-{WIRE}")
    ] == [
        (story_id, True),
        (story_id, False),
    ]
    assert by_title["TSMC raises capex plan"]["story_id"] is None
    assert by_title["TSMC raises capex plan"]["novel"] is None

    body = _client(placed, tmp_path).get("/api/articles", params={"since": "2d", "limit": 100}).json()
    api = {i["id"]: (i["story_id"], i["novel"]) for i in body["items"]}
    assert api == {i["id"]: (i["story_id"], i["novel"]) for i in items}
    assert api[unplaced] == (None, None)


# ----------------------------------------------------------------------------- /api/stories


def test_api_stories_match_the_cli(placed, tmp_path) -> None:  # noqa: ANN001
    client = _client(placed, tmp_path)
    response = client.get("/api/stories", params={"since": "2d", "topic": "nvidia", "sort": "most_negative"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["topic"] == "nvidia" and body["sort"] == "most_negative" and body["limit"] == 50
    cli_items = _json(
        _ok(
            tmp_path,
            placed,
            "stories",
            "--since",
            "2d",
            "--topic",
            "nvidia",
            "--sort",
            "most_negative",
            "--format",
            "json",
        )
    )
    assert body["items"] == cli_items

    def headlines(**params: object) -> list[str]:
        reply = client.get("/api/stories", params=params)
        assert reply.status_code == 200, reply.text
        return [i["headline"] for i in reply.json()["items"]]

    assert headlines(since="2d", sort="sources", limit=1) == [f"{WIRE} - Reuters"]
    assert headlines(since="2d", search="yahoo") == [f"{WIRE} - Reuters"]
    assert headlines(since="2d", topic="custom_chips") == [
        "Broadcom lands record custom AI chip order from OpenAI"
    ]
    assert headlines(since="2d", until=(T0 + timedelta(hours=1)).isoformat()) == [f"{WIRE} - Reuters"]
    assert len(headlines(since="7d")) == 5
    for params in ({}, {"since": ""}):  # the default range: the last 24 hours
        since = client.get("/api/stories", params=params).json()["since"]
        start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        assert abs(start - (datetime.now(UTC) - timedelta(hours=24))) < timedelta(minutes=1)


def test_api_story_detail_and_404(placed, tmp_path) -> None:  # noqa: ANN001
    client = _client(placed, tmp_path)
    story_id = _wire_story(placed)
    body = client.get(f"/api/stories/{story_id}").json()
    assert body["id"] == story_id and body["articles"] == 3 and body["url"] == "https://www.reuters.com/a"
    assert [(m["novel"], m["basis"]) for m in body["members"]] == [
        (True, "first"),
        (False, "text"),
        (False, "text"),
    ]
    [cli_detail] = _json(_ok(tmp_path, placed, "stories", "show", str(story_id), "--format", "json"))
    assert body == cli_detail

    missing = client.get("/api/stories/999999")
    assert missing.status_code == 404 and missing.json()["error"] == "no story with id 999999"
    assert client.get("/api/stories/abc").status_code == 422


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/stories", {"topic": "amd"}, "topic"),
        ("/api/stories", {"since": "soon"}, "since"),
        ("/api/stories", {"since": "1d", "until": "2d"}, "until"),
        ("/api/stories", {"sort": "random()"}, "sort"),
        ("/api/stories", {"sort": "most_positive"}, "sort"),
        ("/api/stories", {"limit": "0"}, "limit"),
        ("/api/stories", {"limit": "5000"}, "limit"),
        ("/api/stories", {"search": "x" * 201}, "search"),
        ("/api/stories", {"search": "a\x00b"}, "search"),
        ("/api/stories/0", {}, "story_id"),
        ("/api/history", {"count": "tweets"}, "count"),
        ("/api/sentiment", {"count": "tweets"}, "count"),
        ("/api/history", {"count": "stories", "since": "365d", "bucket": "15m"}, "bucket"),
        ("/api/history", {"count": "stories", "tz": "Mars/Base"}, "tz"),
    ],
)
def test_invalid_parameters_answer_422_naming_them(sqlite_engine, tmp_path, path, params, param) -> None:  # noqa: ANN001
    response = _client(sqlite_engine, tmp_path).get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert f"'{param}'" in body["error"]
    assert body["detail"][0]["loc"][-1] == param


def test_story_endpoints_need_the_token(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    client = _client(sqlite_engine, tmp_path, http={"api_token": "t0ken-with-enough-length"})
    for path in ("/api/stories", "/api/stories/1", "/api/history?count=stories"):
        assert client.get(path).status_code == 401
        ok = client.get(path, headers={"Authorization": "Bearer t0ken-with-enough-length"})
        assert ok.status_code in (200, 404), ok.text


def test_openapi_documents_the_story_endpoints(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    spec = _client(sqlite_engine, tmp_path).get("/openapi.json").json()
    assert {"/api/stories", "/api/stories/{story_id}", "/api/history"} <= set(spec["paths"])
    names = {p["name"] for p in spec["paths"]["/api/stories"]["get"]["parameters"]}
    assert {"topic", "since", "until", "search", "sort", "limit"} <= names
    assert "count" in {p["name"] for p in spec["paths"]["/api/sentiment"]["get"]["parameters"]}


# ----------------------------------------------------------------------------- history in stories


def _brute_force(engine: Engine, topic: str, start: datetime, end: datetime) -> dict:
    """One bucket by hand from the listing: the topic's stories first seen in [start, end)."""
    stories = list_stories(engine, StoryFilter(since=start, until=end, limit=1000))
    with_topic = [s for s in stories if s.topics]
    votes = [v for s in with_topic for v in s.topics if v.topic == topic]
    n = len(votes)
    return {
        "stories": n,
        "articles": sum(v.articles for v in votes),
        "mean_sentiment": sum(v.sentiment for v in votes) / n if n else None,
        "negative_share": sum(v.label == "negative" for v in votes) / n if n else None,
        "all_stories": len(with_topic),
        "coverage_share": n / len(with_topic) if with_topic else None,
    }


def test_history_counts_stories_with_their_coverage_share(placed, tmp_path) -> None:  # noqa: ANN001
    since, until = T0, T0 + timedelta(hours=6)
    args = ["history", "--since", since.isoformat(), "--until", until.isoformat(), "--bucket", "1h"]
    points = _json(_ok(tmp_path, placed, *args, "--count", "stories", "--format", "json"))
    assert all(
        set(p)
        == {
            "bucket_start",
            "stories",
            "articles",
            "mean_sentiment",
            "negative_share",
            "positive_share",
            "all_stories",
            "coverage_share",
            "topic",
        }
        for p in points
    )
    by_key = {(p["topic"], p["bucket_start"]): p for p in points}
    for (topic, bucket_start), point in by_key.items():
        start = datetime.fromisoformat(bucket_start.replace("Z", "+00:00"))
        expected = _brute_force(placed, topic, start, start + timedelta(hours=1))
        for key, value in expected.items():
            assert point[key] == (pytest.approx(value) if value is not None else None), (topic, key)

    def at(topic: str, hours: int) -> dict:
        return by_key[(topic, (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z"))]

    # The wire story counts once (three copies), in the bucket it was first seen.
    wire = at("nvidia", 0)
    assert (wire["stories"], wire["articles"], wire["negative_share"]) == (1, 3, 1.0)
    assert wire["mean_sentiment"] == pytest.approx(-0.7)
    assert wire["coverage_share"] == 1.0
    # The AI-bubble index: one of the two stories at T0+2h, the only one at T0+5h, none (null) in between.
    assert at("ai_bubble", 2)["coverage_share"] == 0.5 and at("ai_bubble", 2)["all_stories"] == 2
    assert at("ai_bubble", 5)["coverage_share"] == 1.0
    assert at("ai_bubble", 5)["mean_sentiment"] == pytest.approx(0.3)
    assert at("ai_bubble", 3)["coverage_share"] is None and at("ai_bubble", 3)["stories"] == 0
    assert at("custom_chips", 2)["coverage_share"] == 0.5

    # The default stays articles, with the same rows as before.
    default = _json(_ok(tmp_path, placed, *args, "--format", "json"))
    assert all(
        set(p) == {"bucket_start", "articles", "mean_sentiment", "negative_share", "positive_share", "topic"}
        for p in default
    )
    nvidia = [p for p in default if p["topic"] == "nvidia"]
    assert [p["articles"] for p in nvidia] == [3, 0, 0, 0, 0, 1]

    table = _ok(tmp_path, placed, *args, "--count", "stories", "--topic", "ai_bubble").stdout
    assert table.splitlines()[0].split() == [
        "topic",
        "bucket_start",
        "stories",
        "articles",
        "mean_sentiment",
        "negative_share",
        "positive_share",
        "all_stories",
        "coverage_share",
    ]


def test_api_history_counts_stories_like_the_cli(placed, tmp_path) -> None:  # noqa: ANN001
    client = _client(placed, tmp_path)
    since, until = T0.isoformat(), (T0 + timedelta(hours=6)).isoformat()
    params = {"topic": "ai_bubble", "since": since, "until": until, "bucket": "1h", "count": "stories"}
    body = client.get("/api/history", params=params).json()
    assert body["count"] == "stories" and body["topics"] == ["ai_bubble"]
    cli_points = _json(
        _ok(
            tmp_path,
            placed,
            "history",
            "--topic",
            "ai_bubble",
            "--since",
            since,
            "--until",
            until,
            "--count",
            "stories",
            "--format",
            "json",
        )
    )
    assert body["points"] == cli_points
    assert client.get("/api/sentiment", params=params).json() == body  # /api/history is /api/sentiment
    direct = story_history(placed, ["ai_bubble"], T0, T0 + timedelta(hours=6), "1h")
    assert [p.as_dict() for p in direct] == body["points"]
    # Without `count`, the article points exactly as before.
    articles = client.get("/api/history", params={k: v for k, v in params.items() if k != "count"}).json()
    assert articles["count"] == "articles"
    assert set(articles["points"][0]) == {
        "bucket_start",
        "articles",
        "mean_sentiment",
        "negative_share",
        "positive_share",
        "topic",
    }


def test_story_history_in_a_time_zone_and_empty(sqlite_engine) -> None:  # noqa: ANN001
    start = datetime(2026, 3, 28, tzinfo=UTC)
    points = story_history(sqlite_engine, ["nvidia"], start, start + timedelta(days=3), "1d", "Europe/Berlin")
    assert [p.bucket_start.isoformat() for p in points] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",  # the 23-hour day: summer time starts
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]
    assert all(p.stories == 0 and p.coverage_share is None and p.mean_sentiment is None for p in points)
