"""The HTTP API against real databases: agreement with the CLI and the stored rows, filters, auth, 422s,
health probes and the metrics exposition."""

from __future__ import annotations

import contextlib
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from conftest import TOPICS, make_settings
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from seed import SeedArticle, label_of, seed
from sqlmodel import Session

from monitor import metrics
from monitor.api import create_app, routes
from monitor.cli import cli
from monitor.status import RuntimeStatus
from monitor.store import alerts as alert_store
from monitor.store import outbox
from monitor.store.history import history
from monitor.store.tables import Alert, ArticleTopic, Feed

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = (NOW - timedelta(days=2)).replace(minute=0, second=0)


def _articles() -> list[SeedArticle]:
    return [
        SeedArticle("Nvidia beats estimates", T0 + timedelta(minutes=10), {"nvidia": 0.8}, feed="wire"),
        SeedArticle(
            "Nvidia slides on TPU report",
            T0 + timedelta(hours=1, minutes=5),
            {"nvidia": -0.6, "tpu": 0.5},
            feed="wire",
        ),
        SeedArticle(
            "英伟达股价大跌",
            T0 + timedelta(hours=1, minutes=50),
            {"nvidia": -0.9},
            feed="cn",
            language="zh",
        ),
        SeedArticle(
            "輝達市值蒸發", T0 + timedelta(hours=3, minutes=1), {"nvidia": -0.4}, feed="tw", language="zh-tw"
        ),
        SeedArticle(
            "Broadcom lands 100% custom_chip order",
            T0 + timedelta(hours=3, minutes=20),
            {"custom_chips": 0.7},
            feed="wire",
        ),
        SeedArticle("AI bubble talk grows", T0 + timedelta(hours=5), {"ai_bubble": -0.3}, feed="wire"),
    ]


@pytest.fixture
def app_env(engine, tmp_path):  # noqa: ANN001, ANN201
    seed(engine, _articles())
    settings = make_settings(tmp_path, database_url=engine.url.render_as_string(hide_password=False))
    return settings, engine, TestClient(create_app(settings, engine))


def _config(tmp_path: Path, url: str, **extra: object) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump({"database_url": url, "topics": TOPICS, **extra}), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- agreement


def test_sentiment_api_cli_and_rows_agree(app_env, tmp_path) -> None:  # noqa: ANN001
    settings, engine, client = app_env
    since, until = T0 - timedelta(minutes=20), T0 + timedelta(hours=6, minutes=7)
    params = {"since": since.isoformat(), "until": until.isoformat(), "bucket": "1h"}
    response = client.get("/api/sentiment", params={**params, "topic": ["nvidia", "tpu"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["topics"] == ["nvidia", "tpu"]
    api_points = body["points"]

    config = _config(tmp_path, settings.database_url)
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "history",
            "--topic",
            "nvidia",
            "--topic",
            "tpu",
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
            "--bucket",
            "1h",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    cli_points = json.loads(result.stdout[result.stdout.index("[") :])
    assert cli_points == api_points
    assert all(
        set(p) == {"bucket_start", "articles", "mean_sentiment", "negative_share", "positive_share", "topic"}
        for p in cli_points
    )

    # Against the stored rows, by brute force.
    with engine.connect() as connection:
        t = ArticleTopic.__table__.c
        rows = connection.execute(sa.select(t.topic, t.happened_at, t.sentiment, t.label)).all()
    for point in api_points:
        start = datetime.fromisoformat(point["bucket_start"].replace("Z", "+00:00"))
        end = start + timedelta(hours=1)
        sel = [
            r
            for r in rows
            if r.topic == point["topic"] and max(start, since) <= r.happened_at < min(end, until)
        ]
        assert point["articles"] == len(sel)
        if sel:
            assert point["mean_sentiment"] == pytest.approx(sum(r.sentiment for r in sel) / len(sel))
            assert point["negative_share"] == pytest.approx(
                sum(r.label == "negative" for r in sel) / len(sel)
            )
            assert point["positive_share"] == pytest.approx(
                sum(r.label == "positive" for r in sel) / len(sel)
            )
        else:
            assert point["mean_sentiment"] is None and point["negative_share"] is None
    nvidia = [p for p in api_points if p["topic"] == "nvidia"]
    assert [p["articles"] for p in nvidia] == [0, 1, 2, 0, 1, 0, 0, 0]
    assert nvidia[2]["mean_sentiment"] == pytest.approx(-0.75)
    assert nvidia[2]["negative_share"] == 1.0
    # The same function the CLI and API call.
    direct = [p.as_dict() for p in history(engine, ["nvidia", "tpu"], since, until, "1h")]
    assert direct == api_points


def test_cli_history_table_csv_and_tz(app_env, tmp_path) -> None:  # noqa: ANN001
    settings, _engine, _client = app_env
    config = _config(tmp_path, settings.database_url)
    runner = CliRunner()
    since = (T0 - timedelta(hours=1)).isoformat()
    result = runner.invoke(
        cli,
        [
            "--config",
            str(config),
            "history",
            "--topic",
            "nvidia",
            "--since",
            since,
            "--bucket",
            "1d",
            "--format",
            "csv",
            "--tz",
            "Asia/Shanghai",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines[0] == "topic,bucket_start,articles,mean_sentiment,negative_share,positive_share"
    assert all(line.split(",")[1].endswith("+08:00") for line in lines[1:])
    assert sum(int(line.split(",")[2]) for line in lines[1:]) == 4
    table = runner.invoke(cli, ["--config", str(config), "history", "--since", "3d", "--bucket", "1d"])
    assert table.exit_code == 0 and "bucket_start" in table.stdout and "custom_chips" in table.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--topic", "amd"], "--topic"),
        (["--since", "yesterday"], "--since"),
        (["--since", "2099-01-01"], "in the future"),
        (["--since", "1d", "--until", "2d"], "--until"),
        (["--bucket", "5m"], "--bucket"),
        (["--tz", "Berlin"], "--tz"),
        (["--since", "400d", "--bucket", "15m"], "--bucket"),
        (["--since", "7d; DROP TABLE articles"], "--since"),
        (["--since", "100000000d"], "too far back"),
        (["--since", "99999999999d"], "--since"),
        (["--since", "0001-01-01T00:00+01:00"], "out of range"),
        (["--since", "0s"], "now is not after"),
    ],
)
def test_cli_history_bad_input_is_a_clear_error(sqlite_engine, tmp_path, args, needle) -> None:  # noqa: ANN001
    config = _config(tmp_path, str(sqlite_engine.url))
    result = CliRunner().invoke(cli, ["--config", str(config), "history", *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


# ----------------------------------------------------------------------------- articles


def test_articles_filters_sorting_and_paging(app_env) -> None:  # noqa: ANN001
    _settings, _engine, client = app_env
    since = (T0 - timedelta(hours=1)).isoformat()

    def get(**params):  # noqa: ANN003, ANN202
        response = client.get("/api/articles", params={"since": since, **params})
        assert response.status_code == 200, response.text
        return response.json()

    titles = [a["title"] for a in get(topic="nvidia")["items"]]
    assert titles == [
        "輝達市值蒸發",
        "英伟达股价大跌",
        "Nvidia slides on TPU report",
        "Nvidia beats estimates",
    ]
    neg = get(topic="nvidia", sort="most_negative", max_score=-0.0001)["items"]
    assert [a["topic_sentiment"] for a in neg] == [-0.9, -0.6, -0.4]
    assert neg[0]["topic_label"] == "negative" and neg[0]["language"] == "zh"
    assert [a["title"] for a in get(topic="nvidia", min_score=0.5)["items"]] == ["Nvidia beats estimates"]
    assert {a["title"] for a in get(language="zh")["items"]} == {"輝達市值蒸發", "英伟达股价大跌"}
    assert [a["title"] for a in get(language="zh-tw")["items"]] == ["輝達市值蒸發"]
    assert [a["feed"] for a in get(feed="cn")["items"]] == ["cn"]
    assert len(get(feed=["cn", "tw"])["items"]) == 2
    assert [a["title"] for a in get(search="100%")["items"]] == ["Broadcom lands 100% custom_chip order"]
    assert get(search="custom_chip")["items"][0]["topics"][0]["topic"] == "custom_chips"
    assert get(search="nvidia slides")["items"][0]["title"] == "Nvidia slides on TPU report"
    assert get(search="'; DROP TABLE articles; --")["items"] == []
    assert get(search="% OR 1=1")["items"] == []
    assert len(get()["items"]) == 6  # the table is still there
    assert get(label="positive", topic="tpu")["items"][0]["title"] == "Nvidia slides on TPU report"
    # Paging.
    first = get(limit=4)
    assert len(first["items"]) == 4 and first["next_offset"] == 4
    second = get(limit=4, offset=first["next_offset"])
    assert len(second["items"]) == 2 and second["next_offset"] is None
    assert {a["id"] for a in first["items"]}.isdisjoint({a["id"] for a in second["items"]})
    item = first["items"][0]
    assert item["happened_at"].endswith("Z") and item["score"] is not None


# ----------------------------------------------------------------------------- alerts


def test_alerts_history(app_env) -> None:  # noqa: ANN001
    _settings, engine, client = app_env
    fp = alert_store.fingerprint("nvidia-drop", "nvidia")
    with Session(engine) as session:
        session.add(Alert(fingerprint=fp, rule="nvidia-drop", topic="nvidia", state="resolved"))
        session.flush()
        for kind, minutes, value in (("pending", 60, -0.4), ("fired", 75, -0.5), ("resolved", 200, -0.05)):
            alert_store.add_event(
                session,
                fp=fp,
                rule="nvidia-drop",
                topic="nvidia",
                kind=kind,
                at=T0 + timedelta(minutes=minutes),
                value=value,
                threshold=-0.3,
                article_count=3,
            )
        session.commit()
    body = client.get("/api/alerts", params={"since": "3d"}).json()
    assert body["total"] == 1
    episode = body["items"][0]
    assert episode["rule"] == "nvidia-drop" and episode["state"] == "resolved"
    assert episode["fired_at"] == (T0 + timedelta(minutes=75)).isoformat().replace("+00:00", "Z")
    assert client.get("/api/alerts", params={"since": "3d", "state": "firing"}).json()["total"] == 0
    assert client.get("/api/alerts", params={"since": "3d", "topic": "tpu"}).json()["total"] == 0
    assert client.get("/api/alerts", params={"since": "1h"}).json()["total"] == 0


def test_alerts_api_shows_why_the_notification_failed(app_env) -> None:  # noqa: ANN001
    _settings, engine, client = app_env
    fp = alert_store.fingerprint("nvidia-drop", "nvidia")
    with Session(engine) as session:
        session.add(Alert(fingerprint=fp, rule="nvidia-drop", topic="nvidia", state="firing"))
        fired = alert_store.add_event(
            session,
            fp=fp,
            rule="nvidia-drop",
            topic="nvidia",
            kind="fired",
            at=T0 + timedelta(minutes=75),
            value=-0.5,
            threshold=-0.3,
            article_count=3,
        )
        row = outbox.enqueue(
            session, alert_event_id=fired.id, fingerprint=fp, kind="fired", payload={}, now=fired.at
        )
        row.status, row.last_error = "failed", "Slack rejected the message (HTTP 200 channel_not_found)"
        session.commit()
    [episode] = client.get("/api/alerts", params={"since": "3d"}).json()["items"]
    assert episode["notification"] == "failed"
    assert episode["notification_error"] == "Slack rejected the message (HTTP 200 channel_not_found)"


# ----------------------------------------------------------------------------- 422s


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/sentiment", {"since": "soon"}, "since"),
        ("/api/sentiment", {"since": "2099-01-01T00:00Z"}, "since"),
        ("/api/sentiment", {"since": "1d", "until": "2d"}, "until"),
        ("/api/sentiment", {"bucket": "7m"}, "bucket"),
        ("/api/sentiment", {"tz": "Mars/Base"}, "tz"),
        ("/api/sentiment", {"topic": "amd"}, "topic"),
        ("/api/sentiment", {"since": "365d", "bucket": "15m"}, "bucket"),
        ("/api/sentiment", {"since": "100000000d"}, "since"),
        ("/api/sentiment", {"since": "99999999999d"}, "since"),
        ("/api/articles", {"since": "9999-12-31T23:59-01:00"}, "since"),
        ("/api/articles", {"limit": "5000"}, "limit"),
        ("/api/articles", {"limit": "ten"}, "limit"),
        ("/api/articles", {"offset": "-1"}, "offset"),
        ("/api/articles", {"min_score": "2"}, "min_score"),
        ("/api/articles", {"min_score": "0.5", "max_score": "0.1"}, "max_score"),
        ("/api/articles", {"language": "en'--"}, "language"),
        ("/api/articles", {"sort": "random()"}, "sort"),
        ("/api/articles", {"feed": "nope"}, "feed"),
        ("/api/articles", {"search": "x" * 201}, "search"),
        ("/api/articles", {"search": "a\x00b"}, "search"),
        ("/api/alerts", {"state": "exploded"}, "state"),
        ("/api/alerts", {"rule": "nope"}, "rule"),
    ],
)
def test_invalid_parameters_answer_422_naming_them(sqlite_engine, tmp_path, path, params, param) -> None:  # noqa: ANN001
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine))
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert f"'{param}'" in body["error"]
    assert body["detail"][0]["loc"][-1] == param


# ----------------------------------------------------------------------------- auth


def test_bearer_token_guards_the_api_only(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    settings = make_settings(tmp_path, http={"api_token": "t0ken-with-enough-length"})
    client = TestClient(create_app(settings, sqlite_engine))
    for path in ("/api/sentiment", "/api/articles", "/api/alerts", "/api/topics"):
        missing = client.get(path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert (
            client.get(path, headers={"Authorization": "Basic t0ken-with-enough-length"}).status_code == 401
        )
        ok = client.get(path, headers={"Authorization": "Bearer t0ken-with-enough-length"})
        assert ok.status_code == 200, ok.text
    for path in ("/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert "t0ken-with-enough-length" not in client.get("/healthz").text


def test_openapi_documents_every_endpoint(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine))
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/sentiment",
        "/api/articles",
        "/api/alerts",
        "/api/topics",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"]
    names = {p["name"] for p in spec["paths"]["/api/articles"]["get"]["parameters"]}
    assert {
        "topic",
        "since",
        "until",
        "search",
        "feed",
        "language",
        "min_score",
        "max_score",
        "sort",
        "limit",
        "offset",
        "label",
    } <= names
    assert "swagger" in client.get("/docs").text.lower()


def test_dashboard_page_is_served_with_its_assets(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine))
    page = client.get("/")
    assert page.status_code == 200 and "charset=utf-8" in page.headers["content-type"]
    assert '<script src="/static/app.js"' in page.text
    # Nothing from a CDN: every asset reference is local.
    assert all(ref.startswith("/") for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text))
    script = client.get("/static/app.js").text
    assert ".innerHTML" not in script and ".insertAdjacentHTML" not in script and "textContent" in script
    assert client.get("/static/style.css").status_code == 200


# ----------------------------------------------------------------------------- health


def test_health_and_readiness_follow_the_runtime_status(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    status = RuntimeStatus(scheduler_expected=True, model_expected=True)
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine, status))
    assert client.get("/healthz").status_code == 503
    assert "scheduler not running" in client.get("/healthz").json()["problems"]
    status.mark_scheduler(True)
    assert client.get("/healthz").status_code == 200
    status.scheduler_heartbeat = datetime.now(UTC) - timedelta(minutes=10)
    assert client.get("/healthz").status_code == 503
    status.heartbeat()
    assert client.get("/healthz").json()["status"] == "ok"

    ready = client.get("/readyz")
    assert ready.status_code == 503 and "model not loaded" in ready.json()["problems"]
    status.mark_model_loaded("aichip-sentiment")
    assert client.get("/readyz").status_code == 200
    status.set_leader(True)
    assert client.get("/healthz").json()["leader"] is True


def test_readiness_fails_when_the_database_is_unreachable(tmp_path) -> None:  # noqa: ANN001
    from monitor.store.db import create_db_engine

    dead = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:9/nothing?connect_timeout=2")
    client = TestClient(create_app(make_settings(tmp_path), dead))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the database
    assert client.get("/metrics").status_code == 200  # a scrape still answers
    dead.dispose()


# ----------------------------------------------------------------------------- metrics


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_exposition(engine, tmp_path) -> None:  # noqa: ANN001
    feed = f"feed-{engine.dialect.name}-metrics"
    metrics.record_poll(feed, "ok", duration=0.2)
    metrics.record_poll(feed, "error", duration=5.0)
    metrics.record_fetch_error(feed, "timeout")
    metrics.record_articles_stored(feed, new=3, updated=1)
    metrics.observe_scoring(0.05, 8)
    metrics.record_alert_transition("nvidia-drop", "fired")
    metrics.record_notification("console", "fired", ok=False, reason="server_error")
    last = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    with Session(engine) as session:
        session.add(Alert(fingerprint="f1", rule="r1", topic="nvidia", state="firing"))
        session.add(Alert(fingerprint="f2", rule="r2", topic="tpu", state="firing"))
        session.add(Alert(fingerprint="f3", rule="r3", topic="tpu", state="inactive"))
        session.add(Feed(name=f"{feed}-db", url="http://127.0.0.1/x.xml", last_success_at=last))
        session.commit()
    client = TestClient(create_app(make_settings(tmp_path), engine))
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    s = _samples(response.text)
    assert s[("monitor_alerts", (("state", "firing"),))] == 2
    assert s[("monitor_alerts", (("state", "inactive"),))] == 1
    assert s[("monitor_alerts", (("state", "pending"),))] == 0
    assert s[("monitor_feed_polls_total", (("feed", feed), ("status", "ok")))] == 1
    assert s[("monitor_feed_polls_total", (("feed", feed), ("status", "error")))] == 1
    assert s[("monitor_feed_fetch_errors_total", (("feed", feed), ("reason", "timeout")))] == 1
    assert s[("monitor_articles_stored_total", (("feed", feed), ("kind", "new")))] == 3
    assert s[("monitor_feed_last_success_timestamp_seconds", (("feed", feed),))] > 1e9
    assert s[("monitor_feed_last_success_timestamp_seconds", (("feed", f"{feed}-db"),))] == last.timestamp()
    assert (
        s[("monitor_notification_failures_total", (("channel", "console"), ("reason", "server_error")))] >= 1
    )
    assert ("monitor_scoring_duration_seconds_count", ()) in s
    assert s[("monitor_database_up", ())] == 1
    assert (
        s[("monitor_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))] >= 1
    )


def test_label_helper_matches_the_store_convention() -> None:
    assert [label_of(v) for v in (-0.5, 0.0, 0.5)] == ["negative", "neutral", "positive"]


def test_most_negative_and_positive_over_large_ranges(engine) -> None:  # noqa: ANN001
    """Above ~2000 topic rows SQLite walks the (topic, sentiment) index; results must not change."""
    import random

    from monitor.store.articles import ArticleFilter, list_articles

    rnd = random.Random(5)
    start = T0 - timedelta(days=3)
    values = [round(-0.999 + 1.998 * k / 2300, 6) for k in range(2300)]  # distinct: no ties to break
    rnd.shuffle(values)
    articles = [
        SeedArticle(f"n{i}", start + timedelta(seconds=rnd.randrange(3 * 86400)), {"nvidia": value})
        for i, value in enumerate(values)
    ]
    # Extreme ones outside the range must not appear.
    articles.append(SeedArticle("too old", start - timedelta(hours=1), {"nvidia": -1.0}))
    articles.append(SeedArticle("too new", T0 + timedelta(hours=1), {"nvidia": 1.0}))
    seed(engine, articles)
    since, until = start, T0
    inside = [a for a in articles if since <= a.at < until]
    for sort, reverse in (("most_negative", False), ("most_positive", True)):
        got = list_articles(
            engine, ArticleFilter(topics=("nvidia",), since=since, until=until, sort=sort, limit=10)
        )
        expected = sorted(inside, key=lambda a: a.topics["nvidia"] if not reverse else -a.topics["nvidia"])[
            :10
        ]
        assert [a.title for a in got] == [a.title for a in expected]
        page2 = list_articles(
            engine,
            ArticleFilter(topics=("nvidia",), since=since, until=until, sort=sort, limit=10, offset=10),
        )
        assert {a.title for a in page2}.isdisjoint({a.title for a in got})


def test_articles_empty_since_keeps_the_24h_default(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine))
    body = client.get("/api/articles", params={"since": ""}).json()
    span = datetime.fromisoformat(body["until"].replace("Z", "+00:00")) - datetime.fromisoformat(
        body["since"].replace("Z", "+00:00")
    )
    assert span == timedelta(hours=24)


# ----------------------------------------------------------------------------- hardening (issue 11)


def test_sentiment_caps_the_points_per_response(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    """208 days of 15-minute buckets for four topics was 13 MB; past the cap: a clear 422 naming `bucket`."""
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine))
    response = client.get("/api/sentiment", params={"since": "208d", "bucket": "15m"})
    assert response.status_code == 422, response.text[:200]
    body = response.json()
    assert "'bucket'" in body["error"] and body["detail"][0]["loc"] == ["query", "bucket"]
    assert "points" in body["error"] and f"{routes.MAX_POINTS}" in body["error"]
    assert "4 topic(s)" in body["error"]
    # Within the cap: 90 days of hours for all four topics, or one topic at a finer bucket.
    ok = client.get("/api/sentiment", params={"since": "90d", "bucket": "1h"})
    assert ok.status_code == 200 and len(ok.json()["points"]) <= routes.MAX_POINTS
    one = client.get("/api/sentiment", params={"since": "90d", "bucket": "15m", "topic": "nvidia"})
    assert one.status_code == 200 and len(one.json()["points"]) > 8000
    too_many = client.get("/api/sentiment", params={"since": "120d", "bucket": "1h"})
    assert too_many.status_code == 422 and "fewer topics" in too_many.json()["error"]


def test_docs_load_swagger_ui_from_the_server_itself(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    """`/docs` works offline: Swagger UI's script, style sheet and icon come from the app, not a CDN."""
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine))
    page = client.get("/docs")
    assert page.status_code == 200
    refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert any(ref.endswith(".js") for ref in refs) and any(ref.endswith(".css") for ref in refs), refs
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for ref in refs:
        assert ref.startswith("/"), ref
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        if ref.endswith(".js"):
            assert "SwaggerUIBundle" in asset.text
        if ref.endswith(".css"):
            assert ".swagger-ui" in asset.text
    assert "/openapi.json" in refs


def test_metrics_behind_the_token_when_configured(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    """`http.metrics_require_token` guards /metrics; the probes stay open and name no feed or firing count."""
    token = "t0ken-with-enough-length"
    feed = "private-feed-name"
    metrics.record_poll(feed, "ok", duration=0.1)
    with Session(sqlite_engine) as session:
        session.add(Feed(name=feed, url="http://127.0.0.1/p.xml", last_success_at=NOW))
        session.add(Alert(fingerprint="fp-private", rule="private-rule", topic="nvidia", state="firing"))
        session.commit()
    open_app = TestClient(create_app(make_settings(tmp_path, http={"api_token": token}), sqlite_engine))
    assert feed in open_app.get("/metrics").text  # the default: open, for Prometheus without credentials

    settings = make_settings(tmp_path, http={"api_token": token, "metrics_require_token": True})
    client = TestClient(create_app(settings, sqlite_engine, RuntimeStatus()))
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert feed not in refused.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert allowed.status_code == 200 and feed in allowed.text
    assert _samples(allowed.text)[("monitor_alerts", (("state", "firing"),))] == 1
    for probe in ("/healthz", "/readyz"):
        response = client.get(probe)
        assert response.status_code == 200, response.text
        for secret in (feed, "private-rule", "firing", token):
            assert secret not in response.text, (probe, secret)


def test_metrics_token_switch_needs_a_token(tmp_path) -> None:  # noqa: ANN001
    from monitor.config import ConfigError, load_config

    config = _config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", http={"metrics_require_token": True})
    with pytest.raises(ConfigError, match=r"http: metrics_require_token is true but no API token is set"):
        load_config(config, environ={})
    loaded = load_config(config, environ={"MONITOR_API_TOKEN": "t0ken-with-enough-length"})
    assert loaded.http.metrics_require_token


def test_readiness_reports_failing_jobs(sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    """A job whose latest run failed (within the last minutes) makes /readyz 503, naming job and reason."""
    status = RuntimeStatus()
    client = TestClient(create_app(make_settings(tmp_path), sqlite_engine, status))
    assert client.get("/readyz").status_code == 200
    status.record_job("deliver", 'relation "notifications" does not exist')
    status.record_job("deliver", 'relation "notifications" does not exist')
    response = client.get("/readyz")
    assert response.status_code == 503
    (problem,) = response.json()["problems"]
    assert problem.startswith("job 'deliver' failing since ") and "(2 failed runs)" in problem
    assert problem.endswith('relation "notifications" does not exist')
    status.record_job("deliver", None)
    assert client.get("/readyz").status_code == 200
    # An old failure of a rare job (retention runs every 6 h) stops counting after the window.
    status.record_job("retention", "database is locked", now=datetime.now(UTC) - timedelta(minutes=6))
    assert client.get("/readyz").status_code == 200
    # A passing database check ends the database failures before it (a job that runs every 10 minutes must
    # not keep the replica out that long after a repaired outage); other failures wait for their job.
    status.record_job("score-missing", 'relation "articles" does not exist', database=True)
    status.record_job("evaluate", "KeyError: 'nvidia'")
    status.database_recovered(since=datetime.now(UTC))
    assert [p.split(" failing")[0] for p in client.get("/readyz").json()["problems"]] == ["job 'evaluate'"]


def _drop_every_table(engine: sa.Engine) -> None:
    tables = sa.MetaData()
    with engine.begin() as connection:
        tables.reflect(connection)
        tables.drop_all(connection)


def test_readiness_checks_the_schema_and_the_check_upgrades_it_again(engine, tmp_path) -> None:  # noqa: ANN001
    """The database emptied under a running app: /readyz says the schema is missing (not "database ok"),
    and the scheduler's database check upgrades it again; then /readyz is ready."""
    from monitor.ops import check_database
    from monitor.store.migrate import current_revision, head_revision

    client = TestClient(create_app(make_settings(tmp_path), engine, RuntimeStatus()))
    assert client.get("/readyz").json()["database"] == "ok"
    _drop_every_table(engine)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "schema"
    assert body["problems"][0].startswith("database schema missing at ")
    assert f"expected revision {head_revision()}" in body["problems"][0]
    check_database(engine)
    assert current_revision(engine) == head_revision()
    assert client.get("/readyz").status_code == 200
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(Alert.__table__)).scalar() == 0


@pytest.mark.postgres
def test_concurrent_queries_are_bounded(tmp_path, pg_server) -> None:  # noqa: ANN001
    """With one query slot, a query stuck in the database makes the next one wait `query_wait`, then 503
    with Retry-After; the probes answer meanwhile; the slot is free again once the first query ends."""
    import threading

    import httpx
    import uvicorn
    from conftest import drop_pg_database, make_pg_database

    from monitor.store.db import create_db_engine
    from monitor.store.migrate import upgrade

    if pg_server is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    url = make_pg_database()
    engine = create_db_engine(url)
    locker = sa.create_engine(url)
    try:
        upgrade(engine)
        settings = make_settings(
            tmp_path, database_url=url, http={"max_concurrent_queries": 1, "query_wait": "1s"}
        )
        app = create_app(settings, engine)
        with _serve(app, uvicorn) as base, locker.connect() as lock:
            lock.execute(sa.text("LOCK TABLE topic_rollup IN ACCESS EXCLUSIVE MODE"))
            first: dict[str, httpx.Response] = {}
            stuck = threading.Thread(
                target=lambda: first.update(
                    r=httpx.get(f"{base}/api/sentiment", params={"since": "7d"}, timeout=60)
                )
            )
            stuck.start()
            deadline = time.monotonic() + 20
            while app.state.query_gate.running < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert app.state.query_gate.running == 1
            started = time.monotonic()
            busy = httpx.get(f"{base}/api/articles", timeout=30)
            assert busy.status_code == 503, busy.text
            assert 0.9 <= time.monotonic() - started < 10
            assert busy.headers["retry-after"].isdigit()
            assert "max_concurrent_queries" in busy.json()["detail"]
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            lock.rollback()  # the stuck query proceeds
            stuck.join(30)
            assert first["r"].status_code == 200
            assert httpx.get(f"{base}/api/articles", timeout=30).status_code == 200
            deadline = time.monotonic() + 5  # a slot is given back just after its response went out
            while app.state.query_gate.running and time.monotonic() < deadline:
                time.sleep(0.02)
            assert app.state.query_gate.running == 0
    finally:
        engine.dispose()
        locker.dispose()
        drop_pg_database(url)


@contextlib.contextmanager
def _serve(app, uvicorn):  # noqa: ANN001, ANN202 - a real HTTP server on 127.0.0.1 for concurrency tests
    import threading

    from tests.procs import free_port

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
