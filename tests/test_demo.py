"""`monitor demo`: the recorded feeds, their playback server, and the whole flow with the real model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import feedparser
import httpx
import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.demo.runner import demo_settings, fresh_sqlite, run_demo
from monitor.demo.server import ANCHOR, DemoFeedServer, feed_files, shift_dates
from monitor.store.history import history
from monitor.store.stories import StoryFilter, list_stories

EXPECTED_ITEMS = {
    "chip-wire.xml": 40,
    "markets.xml": 23,
    "cn-tech.xml": 14,
    "tw-tech.xml": 6,
    "news-search.xml": 7,
}
WIRE_STORY = "Nvidia shares slide 4% on report Meta may use Google's TPUs"


def test_recorded_feeds_parse_and_span_days() -> None:
    assert {p.name for p in feed_files()} == set(EXPECTED_ITEMS)
    for path in feed_files():
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, (path.name, parsed.bozo_exception)
        assert len(parsed.entries) == EXPECTED_ITEMS[path.name]
        times = [datetime(*e.published_parsed[:6], tzinfo=UTC) for e in parsed.entries]
        assert max(times) <= ANCHOR
        assert ANCHOR - min(times) >= timedelta(days=2)


def test_recorded_feeds_hold_a_copy_storm_and_a_translation() -> None:
    """One wire story copied by several publishers (their names after the headline), and one English story
    with its Chinese translation: what the dashboard's stories and source counts are there to show."""
    titles = {p.name: [e.title for e in feedparser.parse(p.read_bytes()).entries] for p in feed_files()}
    copies = {name: [t for t in found if "Meta may use Google" in t] for name, found in titles.items()}
    assert len([name for name, found in copies.items() if found]) >= 3
    assert {t.rsplit(" - ", 1)[-1] for t in copies["news-search.xml"]} == {
        "Reuters",
        "Yahoo Finance",
        "Investing.com",
    }
    assert any(t.startswith("SoftBank sells its entire Nvidia stake") for t in titles["news-search.xml"])
    assert "软银清仓所持全部英伟达股份，为投资OpenAI筹资" in titles["cn-tech.xml"]


def test_shift_dates_moves_rss_and_atom_dates() -> None:
    rss = (
        "<pubDate>Tue, 25 Nov 2025 17:30:00 +0000</pubDate>"
        "<lastBuildDate>Tue, 25 Nov 2025 17:55:00 GMT</lastBuildDate>"
    )
    atom = "<published>2025-11-25T17:00:00Z</published><updated>2025-11-25T17:00:00+00:00</updated>"
    shifted = shift_dates(rss + atom, timedelta(days=3, hours=1))
    assert "<pubDate>Fri, 28 Nov 2025 18:30:00 GMT</pubDate>" in shifted
    assert "<lastBuildDate>Fri, 28 Nov 2025 18:55:00 GMT</lastBuildDate>" in shifted
    assert shifted.count("2025-11-28T18:00:00Z") == 2


def test_feed_server_plays_back_with_recent_dates() -> None:
    now = datetime.now(UTC)
    with DemoFeedServer(now=now) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        response = httpx.get(server.url("cn-tech.xml"), timeout=5)
        assert response.status_code == 200
        parsed = feedparser.parse(response.content)
        assert parsed.entries[0].title == "AI泡沫论再起，英伟达领跌芯片股"
        newest = max(datetime(*e.published_parsed[:6], tzinfo=UTC) for e in parsed.entries)
        assert timedelta(0) < now - newest < timedelta(hours=3)
        assert httpx.get(server.url("nothing.xml"), timeout=5).status_code == 404


@pytest.fixture(scope="module")
def demo_classifier():  # noqa: ANN201
    """The real model with the demo's topics."""
    from monitor.classify import Classifier
    from monitor.config import ModelConfig

    settings = demo_settings("http://127.0.0.1:1", "sqlite://")
    return Classifier.from_config(ModelConfig(threads=2, precision="fp32"), settings.topics)


def test_demo_runs_the_whole_flow_offline(tmp_path, demo_classifier) -> None:  # noqa: ANN001
    url = fresh_sqlite(tmp_path / "demo.db")
    now = datetime.now(UTC)
    with DemoFeedServer(now=now) as server:
        report = run_demo(url, server=server, classifier=demo_classifier, now=now)
    assert [(r.feed, r.status) for r in report.feeds] == [
        ("chip-wire", "ok"),
        ("markets-desk", "ok"),
        ("cn-tech", "ok"),
        ("tw-tech", "ok"),
        ("news-search", "ok"),
    ]
    assert sum(r.new for r in report.feeds) == sum(EXPECTED_ITEMS.values())
    assert report.scored == sum(EXPECTED_ITEMS.values())
    assert report.evaluations > 4 * 24 * 4  # every 15 minutes over four days

    # The negative Nvidia turn at the end of the recording shows in the history and fired the alert.
    points = history(report.engine, ["nvidia"], now - timedelta(hours=96), now, "6h")
    assert sum(p.articles for p in points) >= 40

    def mean(since: timedelta, until: timedelta) -> float:
        pts = [p for p in history(report.engine, ["nvidia"], now - since, now - until, "15m") if p.articles]
        return sum(p.mean_sentiment * p.articles for p in pts) / sum(p.articles for p in pts)

    assert mean(timedelta(hours=8), timedelta(0)) < -0.1  # the last hours: the negative turn
    assert mean(timedelta(hours=96), timedelta(hours=54)) > 0.1  # the first days: Blackwell, earnings beat
    fired = {e.rule: e for e in report.episodes}
    assert "nvidia-sentiment-drop" in fired
    assert fired["nvidia-sentiment-drop"].fired_at >= now - timedelta(hours=9)

    # The wire story's copies are one story: the most sources of all, from at least three feeds.
    top = list_stories(report.engine, StoryFilter(order="sources", limit=1))[0]
    assert top.headline == WIRE_STORY and top.sources >= 4
    assert {"reuters", "yahoo finance", "investing.com"} <= set(top.source_names)
    report.engine.dispose()


def test_demo_command_reports_a_busy_port(tmp_path) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["demo", "--db", str(tmp_path / "d.db"), "--port", str(port)])
    assert result.exit_code == 2
    assert "--port" in result.output and "Traceback" not in result.output


def test_demo_refuses_to_replace_a_file_that_is_not_its_database(tmp_path) -> None:  # noqa: ANN001
    import sqlite3

    precious = tmp_path / "notes.txt"
    precious.write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(cli, ["demo", "--no-serve", "--db", str(precious)])
    assert result.exit_code == 1 and "not a demo database" in result.output
    assert precious.read_text(encoding="utf-8") == "keep me"

    real = tmp_path / "monitor.db"  # the monitor's own database, with a real feed
    with sqlite3.connect(real) as conn:
        conn.execute("CREATE TABLE feeds (url TEXT)")
        conn.execute("INSERT INTO feeds VALUES ('https://news.example.com/rss')")
    with pytest.raises(Exception, match="not a demo database"):
        fresh_sqlite(real)
    assert real.exists()

    previous = tmp_path / "demo.db"  # an earlier demo run is replaced
    with sqlite3.connect(previous) as conn:
        conn.execute("CREATE TABLE feeds (url TEXT)")
        conn.execute("INSERT INTO feeds VALUES ('http://127.0.0.1:4321/chip-wire.xml')")
    assert fresh_sqlite(previous) == f"sqlite:///{previous}"
    assert not previous.exists()
