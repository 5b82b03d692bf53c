"""CLI: `monitor collect`, `monitor feeds check|list|import-opml`, `monitor articles`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from feedserver import FeedServer

from monitor.cli import cli
from monitor.collect import Collector
from monitor.config import load_config
from monitor.store.db import create_db_engine
from monitor.store.migrate import upgrade
from tests.procs import write_config


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        srv.route("/cli/500", status=500, body=b"down")
        yield srv


def invoke(config: Path, *args: str) -> object:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def config_with(tmp_path: Path, server: FeedServer, feeds: dict[str, str]) -> Path:
    return write_config(
        tmp_path / "monitor.yaml",
        f"sqlite:///{tmp_path / 'monitor.db'}",
        feeds=[{"name": name, "url": server.url(path)} for name, path in feeds.items()],
        collect={"read_timeout": "2s", "total_timeout": "4s"},
    )


# ----------------------------------------------------------------------------- feeds check


def test_feeds_check_reports_each_feed_and_stores_nothing(tmp_path: Path, server: FeedServer) -> None:
    config = config_with(tmp_path, server, {
        "good": "/feeds/rss20.xml", "chinese": "/feeds/big5_undeclared.xml", "page": "/feeds/not_a_feed.html",
        "down": "/cli/500", "broken": "/feeds/malformed.xml",
    })  # fmt: skip
    result = invoke(config, "feeds", "check")
    assert result.exit_code == 1, result.output  # a feed failed
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and line.split()[0] in
             ("good", "chinese", "page", "down", "broken")}  # fmt: skip
    assert lines["good"].split()[1:4] == ["ok", "200", "3"]
    assert "big5hkscs" in lines["chinese"]
    assert "error" in lines["page"] and "HTML page" in lines["page"]
    assert "HTTP 500" in lines["down"]
    assert "malformed" in lines["broken"]
    assert "5 feeds checked: 3 ok, 2 failed" in result.stdout
    assert not (tmp_path / "monitor.db").exists()  # nothing stored, no database needed

    ok = invoke(config, "feeds", "check", "--feed", "good", "--format", "json")
    assert ok.exit_code == 0
    [data] = json.loads(ok.stdout)
    assert (data["feed"], data["status"], data["entries"], data["http_status"]) == ("good", "ok", 3, 200)


def test_feeds_check_unknown_feed(tmp_path: Path, server: FeedServer) -> None:
    config = config_with(tmp_path, server, {"good": "/feeds/rss20.xml"})
    result = invoke(config, "feeds", "check", "--feed", "nope")
    assert result.exit_code != 0 and "unknown feed 'nope'" in result.output


# ----------------------------------------------------------------------------- import-opml

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="Chips" title="Chips">
      <outline type="rss" text="Semi Analysis Weekly" title="Semi Analysis Weekly"
               xmlUrl="https://semi.example.com/feed/" htmlUrl="https://semi.example.com/"/>
      <outline type="rss" text="Already there" xmlUrl="https://existing.example.com/rss.xml"/>
    </outline>
    <outline text="ai bubble">
      <outline type="rss" text="Bubble Watch" xmlUrl="https://bubble.example.com/atom.xml"/>
    </outline>
    <outline type="rss" text="Semi Analysis Weekly" xmlUrl="https://semi2.example.com/rss"/>
    <outline type="rss" text="Copy" xmlUrl="https://semi.example.com/feed/"/>
    <outline type="rss" text="Gopher" xmlUrl="gopher://old.example.com/feed"/>
    <outline type="rss" text="科技新闻" xmlUrl="https://zh.example.cn/rss"/>
  </body>
</opml>
"""

CONFIG = """# My monitor configuration
database_url: sqlite:///data/monitor.db   # keep this comment

feeds:
  # English news
  - {name: existing, url: "https://existing.example.com/rss.xml", every: 10m}
  - name: other
    url: https://other.example.com/feed
# the topics below
topics:
  nvidia: {keywords: [nvidia]}
  ai_bubble: {keywords: [ai bubble]}
"""


def test_import_opml_writes_into_the_config_keeping_it_intact(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML, encoding="utf-8")
    result = invoke(config, "feeds", "import-opml", str(opml), "--every", "20m")
    assert result.exit_code == 0, result.output
    assert "added 4 feeds" in result.stdout and "1 already configured" in result.stdout
    assert "1 repeated" in result.stdout and "gopher://old.example.com/feed" in result.stdout
    text = config.read_text(encoding="utf-8")
    assert text.startswith(CONFIG.split("# the topics below")[0].rstrip("\n"))  # existing lines untouched
    assert "# keep this comment" in text and "# the topics below" in text
    settings = load_config(config, environ={})
    by_name = {feed.name: feed for feed in settings.feeds}
    assert list(by_name) == ["existing", "other", "semi-analysis-weekly", "bubble-watch",
                             "semi-analysis-weekly-2", "zh-example-cn"]  # fmt: skip
    assert by_name["semi-analysis-weekly"].url == "https://semi.example.com/feed/"
    assert by_name["bubble-watch"].topics == ["ai_bubble"]  # from its folder
    assert by_name["zh-example-cn"].url == "https://zh.example.cn/rss"
    assert all(by_name[n].every.total_seconds() == 1200 for n in ("bubble-watch", "zh-example-cn"))

    again = invoke(config, "feeds", "import-opml", str(opml))
    assert again.exit_code == 0 and "nothing to add" in again.stdout
    assert config.read_text(encoding="utf-8") == text


def test_import_opml_print_only(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML, encoding="utf-8")
    result = invoke(config, "feeds", "import-opml", str(opml), "--print")
    assert result.exit_code == 0
    assert config.read_text(encoding="utf-8") == CONFIG
    pasted = yaml.safe_load(result.stdout)
    assert [feed["name"] for feed in pasted["feeds"]] == [
        "semi-analysis-weekly",
        "bubble-watch",
        "semi-analysis-weekly-2",
        "zh-example-cn",
    ]


@pytest.mark.parametrize("feeds_text", ["feeds: []\n", ""])
def test_import_opml_into_a_config_without_feeds(tmp_path: Path, feeds_text: str) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("database_url: sqlite:///x.db\n" + feeds_text + "topics: {}\n", encoding="utf-8")
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML, encoding="utf-8")
    result = invoke(config, "feeds", "import-opml", str(opml))
    assert result.exit_code == 0, result.output
    assert len(load_config(config, environ={}).feeds) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [("<html><body>nope</body></html>", "is not an OPML file"), ("<opml><body>", "cannot read OPML file")],
)
def test_import_opml_bad_file(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    opml = tmp_path / "bad.opml"
    opml.write_text(content, encoding="utf-8")
    result = invoke(config, "feeds", "import-opml", str(opml))
    assert result.exit_code != 0 and message in result.output
    assert config.read_text(encoding="utf-8") == CONFIG


# ----------------------------------------------------------------------------- articles


@pytest.fixture
def collected(tmp_path: Path, server: FeedServer) -> Path:
    config = config_with(tmp_path, server, {"rss": "/feeds/rss20.xml", "zh": "/feeds/gb2312_undeclared.xml"})
    settings = load_config(config, environ={})
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    collector = Collector(settings, engine)
    assert {r.status for r in collector.collect_many(settings.feeds)} == {"ok"}
    engine.dispose()
    return config


def test_articles_json(collected: Path) -> None:
    result = invoke(collected, "articles", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data) == 6
    for item in data:
        assert {"id", "title", "url", "feed", "published_at", "language", "score", "label", "topics"} <= set(
            item
        )
    chinese = [item for item in data if item["feed"] == "zh"]
    assert {item["language"] for item in chinese} == {"zh"}
    assert "英伟达股价下跌，谷歌向Meta推销张量处理器" in {item["title"] for item in chinese}
    assert data[0]["published_at"].endswith("Z")


def test_articles_filters_table_and_csv(collected: Path) -> None:
    table = invoke(collected, "articles", "--search", "burry")
    assert table.exit_code == 0 and "Michael Burry bets against AI stocks" in table.stdout
    assert "Marvell" not in table.stdout
    rows = list(
        csv.DictReader(io.StringIO(invoke(collected, "articles", "--format", "csv", "--feed", "zh").stdout))
    )
    assert len(rows) == 3 and {row["language"] for row in rows} == {"zh"}
    window = json.loads(invoke(collected, "articles", "--format", "json", "--since", "2025-11-24T00:00Z",
                               "--until", "2025-11-25T00:00Z").stdout)  # fmt: skip
    assert {item["title"] for item in window} == {"人工智能泡沫担忧加剧，投资者抛售芯片股"}
    limited = json.loads(invoke(collected, "articles", "--format", "json", "--limit", "2").stdout)
    assert len(limited) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since"),
        (["--topic", "bitcoin"], "bitcoin"),
        (["--feed", "nope"], "nope"),
    ],
)
def test_articles_bad_options(collected: Path, args: list[str], message: str) -> None:
    result = invoke(collected, "articles", *args)
    assert result.exit_code != 0 and message in result.output


# ----------------------------------------------------------------------------- collect (the whole pass)


@pytest.mark.slow
def test_collect_command_runs_a_pass_and_reports_failed_feeds(tmp_path: Path, server: FeedServer) -> None:
    config = config_with(tmp_path, server, {"rss": "/feeds/rss20.xml", "down": "/cli/500",
                                            "zh": "/feeds/zh_utf8.xml"})  # fmt: skip
    first = invoke(config, "collect")
    assert first.exit_code == 0, first.output
    lines = {line.split()[0]: line.split() for line in first.stdout.splitlines() if line.strip()}
    assert lines["rss"][:4] == ["rss", "ok", "200", "3"]
    assert lines["down"][:3] == ["down", "error", "500"] and "HTTP 500" in first.stdout
    assert "3 feeds (1 failed): 5 new, 0 updated; 5 scored" in first.stdout

    second = invoke(config, "collect", "--feed", "rss", "--format", "json")
    assert second.exit_code == 0
    report = json.loads(second.stdout)
    assert [(f["feed"], f["status"], f["new"]) for f in report["feeds"]] == [("rss", "not_modified", 0)]
    assert report["new"] == 0

    listing = invoke(config, "feeds", "list", "--format", "json")
    states = {item["feed"]: item for item in json.loads(listing.stdout)}
    assert states["down"]["errors"] == 1 and states["down"]["last_status"] == "error"
    assert states["rss"]["last_status"] == "not_modified"


def test_collect_command_unknown_feed_and_unreachable_database(tmp_path: Path, server: FeedServer) -> None:
    config = config_with(tmp_path, server, {"rss": "/feeds/rss20.xml"})
    unknown = invoke(config, "collect", "--feed", "nope")
    assert unknown.exit_code != 0 and "unknown feed 'nope'" in unknown.output
    data = yaml.safe_load(config.read_text())  # a valid config; only the database is wrong
    data["database_url"] = "postgresql://postgres@127.0.0.1:1/none"
    config.write_text(yaml.safe_dump(data))
    down = invoke(config, "collect")
    assert down.exit_code != 0 and "database unreachable" in down.output
