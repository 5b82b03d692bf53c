"""The collector against the local feed server and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import make_settings
from feedserver import FEEDS_DIR, FeedServer, load_samples

from monitor.collect import Collector, FeedResult
from monitor.config import FeedConfig
from monitor.store.articles import ArticleFilter, article_count, list_articles
from monitor.store.feeds import get_feed
from monitor.store.tables import Article
from monitor.timeutil import utcnow

SAMPLES = load_samples()

FORMAT_FILES = {  # file -> entries stored from it
    "rss091.xml": 2, "rss092.xml": 2, "rss10.rdf": 2, "rss20.xml": 3, "atom03.xml": 2, "atom10.xml": 2,
    "google_news.xml": 3, "bing_news.xml": 2, "zh_utf8.xml": 2, "edge_entries.xml": 8,
    **{name: len(sample["items"]) for name, sample in SAMPLES.items()},
}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def unique(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:8]}"


def feed(name: str, url: str, every: str = "10m") -> dict:
    return {"name": name, "url": url, "every": every}


def collector(tmp_path: Path, engine: sa.Engine, feeds: list[dict], **collect: object) -> Collector:
    options: dict[str, object] = {"connect_timeout": "2s", "read_timeout": "2s", "total_timeout": "5s"}
    options.update(collect)
    return Collector(make_settings(tmp_path, feeds=feeds, collect=options), engine)


def by_feed(results: list[FeedResult]) -> dict[str, FeedResult]:
    return {result.feed: result for result in results}


def rows(engine: sa.Engine) -> list[Article]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(Article.__table__)).all())


# ---------------------------------------------------------------- stored once; a second pass adds nothing


def test_every_feed_stored_once_and_a_second_pass_adds_nothing(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    feeds = [
        feed(name.replace(".", "-").replace("_", "-"), server.url(f"/feeds/{name}")) for name in FORMAT_FILES
    ]
    c = collector(tmp_path, engine, feeds)
    first = c.collect_many(c.settings.feeds)
    assert [r.status for r in first] == ["ok"] * len(feeds), [(r.feed, r.error) for r in first if r.error]
    stored = {r.feed: r.new for r in first}
    expected = {name.replace(".", "-").replace("_", "-"): count for name, count in FORMAT_FILES.items()}
    assert stored == expected
    assert article_count(engine) == sum(FORMAT_FILES.values())
    assert sum(len(r.events) for r in first) == sum(FORMAT_FILES.values())

    second = c.collect_many(c.settings.feeds)  # conditional GET: every file answers 304
    assert {r.status for r in second} == {"not_modified"}
    assert sum(r.new + r.updated for r in second) == 0 and not any(r.events for r in second)
    assert article_count(engine) == sum(FORMAT_FILES.values())


def test_full_refetch_without_validators_adds_nothing(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    names = ["rss20.xml", "atom10.xml", "edge_entries.xml", "gb2312_undeclared.xml", "google_news.xml"]
    feeds = [feed(f"f{i}", server.route(unique("novalidators"), file=name, etag=False, last_modified=None))
             for i, name in enumerate(names)]  # fmt: skip
    c = collector(tmp_path, engine, feeds)
    first = c.collect_many(c.settings.feeds)
    again = c.collect_many(c.settings.feeds)
    assert [r.status for r in again] == ["ok"] * len(names)
    assert [r.new for r in again] == [0] * len(names) and [r.updated for r in again] == [0] * len(names)
    assert [r.unchanged for r in again] == [r.new for r in first]
    assert article_count(engine) == sum(r.new for r in first)


def test_legacy_charsets_are_stored_with_the_right_characters(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    feeds = [feed(f"enc{i}", server.url(f"/feeds/{name}")) for i, name in enumerate(sorted(SAMPLES))]
    c = collector(tmp_path, engine, feeds)
    results = c.collect_many(c.settings.feeds)
    assert {r.status for r in results} == {"ok"}
    stored = {(row.title, row.summary, row.language) for row in rows(engine)}
    for sample in SAMPLES.values():
        for title, summary in sample["items"]:
            assert (title, summary, sample["language"]) in stored


# ----------------------------------------------------------------------------- edits and duplicates


RSS_TEMPLATE = """<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Edits</title>
<link>https://edits.example.com/</link>{items}</channel></rss>"""
ITEM = (
    "<item><title>{title}</title><link>{link}</link><guid>{guid}</guid><description>{text}</description>"
    "</item>"
)


def rss(*items: tuple[str, str, str, str]) -> bytes:
    body = "".join(ITEM.format(title=t, link=link, guid=g, text=x) for t, link, g, x in items)
    return RSS_TEMPLATE.format(items=body).encode()


def test_republished_entry_with_an_edited_title_updates_the_row(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    path = unique("edits")
    a = ("Nvidia shares slip", "https://edits.example.com/a", "a", "Shares fell.")
    b = ("TPU demand rises", "https://edits.example.com/b", "b", "Demand rose.")
    url = server.route(path, body=rss(a, b))
    c = collector(tmp_path, engine, [feed("edits", url)])
    first = c.collect_feed(c.settings.feeds[0])
    assert (first.new, first.updated) == (2, 0)
    original_id = next(e.article_id for e in first.events if e.url == "https://edits.example.com/a")

    edited = ("Nvidia shares slump 5% after Meta report", *a[1:])
    server.route(path, body=rss(edited, b))
    second = c.collect_feed(c.settings.feeds[0])
    assert (second.status, second.new, second.updated, second.unchanged) == ("ok", 0, 1, 1)
    [event] = second.events
    assert event.is_update and event.article_id == original_id
    assert event.title == "Nvidia shares slump 5% after Meta report"
    assert article_count(engine) == 2
    row = next(r for r in rows(engine) if r.id == original_id)
    assert row.title == "Nvidia shares slump 5% after Meta report" and row.revision == 2
    assert row.updated_at is not None

    third = c.collect_feed(c.settings.feeds[0])  # the same document again: a 304, nothing to do
    assert (third.status, third.new, third.updated) == ("not_modified", 0, 0) and not third.events


def test_duplicate_ids_inside_one_feed_are_stored_once(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    item = ("Same story", "https://dups.example.com/s", "dup-1", "Twice in one document.")
    other = ("Other story", "https://dups.example.com/o", "dup-2", "Once.")
    url = server.route(unique("dups"), body=rss(item, other, item, item))
    c = collector(tmp_path, engine, [feed("dups", url)])
    result = c.collect_feed(c.settings.feeds[0])
    assert (result.new, result.duplicates) == (2, 2)
    assert article_count(engine) == 2


def test_same_article_in_two_feeds_is_stored_once_and_never_flip_flops(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    link = "https://www.reuters.com/technology/nvidia-meta-tpu/"
    one = server.route(unique("agg1"), body=rss(("Nvidia falls on TPU report", link, "x1", "One.")))
    two = server.route(unique("agg2"), body=rss(("Nvidia falls on TPU report - Reuters", link, "y9", "Two.")))
    c = collector(tmp_path, engine, [feed("agg-one", one), feed("agg-two", two)])
    for _ in range(3):
        results = by_feed([c.collect_feed(f) for f in c.settings.feeds])
        assert results["agg-two"].updated == 0 and results["agg-one"].updated == 0
    [row] = rows(engine)
    assert row.title == "Nvidia falls on TPU report" and row.revision == 1


def test_entries_missing_id_link_title_or_date(engine: sa.Engine, server: FeedServer, tmp_path: Path) -> None:
    c = collector(tmp_path, engine, [feed("edge", server.url("/feeds/edge_entries.xml"))])
    before = utcnow()
    result = c.collect_feed(c.settings.feeds[0])
    assert (result.status, result.new, result.duplicates, result.skipped) == ("ok", 8, 1, 1)
    stored = {row.title: row for row in rows(engine)}
    no_date = stored["No id and no date: TSMC raises CoWoS capacity"]
    assert no_date.published_at is None  # NULL, never "now"
    assert no_date.happened_at == no_date.collected_at and no_date.collected_at >= before.replace(
        microsecond=0
    )
    assert no_date.url == "https://edge.example.com/tsmc-cowos?page=2"
    no_link = stored["No link, only a guid: SK Hynix HBM4 samples"]
    assert no_link.url is None and no_link.guid == "edge-hbm4"
    untitled = next(row for title, row in stored.items() if title.startswith("An entry without a title"))
    assert untitled.url is None and untitled.guid is None and untitled.published_at is not None
    assert stored["Absurd date in the future"].published_at is None
    assert stored["Absurd date in the past"].published_at is None


# ---------------------------------------------------------------- bad input: clear errors, others go on


def test_bad_feeds_fail_clearly_and_the_others_keep_going(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    server.route("/bad/loop-a", status=301, location="/bad/loop-b")
    server.route("/bad/loop-b", status=301, location="/bad/loop-a")
    bad = {
        "html": (server.url("/feeds/not_a_feed.html"), "html", "HTML page, not an RSS/Atom feed"),
        "empty": (server.route("/bad/empty", body=b""), "empty", "empty response body"),
        "missing": (server.route("/bad/404", status=404, body=b"no"), "http_4xx", "HTTP 404"),
        "broken": (server.route("/bad/500", status=500, body=b"no"), "http_5xx", "HTTP 500"),
        "hang": (server.route("/bad/hang", hang=True), "timeout", "read timeout"),
        "huge": (server.route("/bad/huge", file="rss20.xml", content_length=99_000_000), "too_large",
                 "byte limit"),
        "endless": (server.route("/bad/endless", endless=True), "too_large", "byte limit"),
        "loop": (server.url("/bad/loop-a"), "redirect_loop", "redirect loop"),
        "json": (server.route("/bad/json", body=b'{"a": 1}', content_type="application/json"), "not_feed",
                 "not an RSS or Atom feed"),
    }  # fmt: skip
    good = {"good-rss": server.url("/feeds/rss20.xml"), "good-atom": server.url("/feeds/atom10.xml")}
    feeds = [feed(name, url) for name, (url, _, _) in bad.items()] + [feed(n, u) for n, u in good.items()]
    c = collector(tmp_path, engine, feeds, read_timeout="1s", max_bytes=500_000, concurrency=16)
    started = time.monotonic()
    results = by_feed(c.collect_many(c.settings.feeds))
    assert time.monotonic() - started < 4  # the hang costs its own read timeout, not the others' time
    for name, (_, reason, text) in bad.items():
        result = results[name]
        assert (result.status, result.reason) == ("error", reason), (name, result.error)
        assert text in result.error
        state = get_feed(engine, name)
        assert state.last_status == "error" and state.last_error == result.error
        assert state.consecutive_errors == 1 and state.next_poll_at is not None
    for name in good:
        assert results[name].status == "ok" and results[name].new > 0
        assert results[name].duration < 1.5


def test_malformed_feed_stores_what_parses_and_flags_the_feed(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    c = collector(tmp_path, engine, [feed("broken-xml", server.url("/feeds/malformed.xml"))])
    result = c.collect_feed(c.settings.feeds[0])
    assert (result.status, result.new) == ("malformed", 3)
    assert result.error.startswith("malformed XML: not well-formed") and "line 4" in result.error
    state = get_feed(engine, "broken-xml")
    assert state.last_status == "malformed" and state.last_error == result.error
    assert state.consecutive_errors == 0  # content arrived: no backoff
    assert {row.title for row in rows(engine)} >= {"AMD & Nvidia trade blows in the AI GPU market"}
    unchanged = c.collect_feed(c.settings.feeds[0])  # 304: the document is still the malformed one
    assert unchanged.status == "not_modified"
    assert get_feed(engine, "broken-xml").last_error == result.error


def test_non_http_feed_url_is_an_error_on_the_feed(engine: sa.Engine, tmp_path: Path) -> None:
    # The config refuses such a URL at load time; a URL that reaches the collector anyway is an error too.
    bad = FeedConfig.model_construct(name="ftp-feed", url="ftp://example.com/feed.xml",
                                     every=timedelta(minutes=10),
                                     language=None, topics=[], enabled=True)  # fmt: skip
    c = collector(tmp_path, engine, [])
    result = c.collect_feed(bad)
    assert (result.status, result.reason) == ("error", "invalid_url")
    assert "not an http(s) URL" in result.error
    assert get_feed(engine, "ftp-feed").last_error == result.error


# ----------------------------------------------------------------------------- backoff


def test_failing_feed_backs_off_exponentially_and_recovers(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    path = unique("flaky")
    url = server.route(path, status=500, body=b"down")
    c = collector(tmp_path, engine, [feed("flaky", url, every="10m")], max_backoff="25m")
    f = c.settings.feeds[0]
    delays = []
    for _ in range(3):
        before = utcnow()
        result = c.collect_feed(f)
        assert result.status == "error"
        delays.append(get_feed(engine, "flaky").next_poll_at - before)
    assert timedelta(minutes=10) <= delays[0] < timedelta(minutes=10, seconds=5)
    assert timedelta(minutes=20) <= delays[1] < timedelta(minutes=20, seconds=5)
    assert timedelta(minutes=25) <= delays[2] < timedelta(minutes=25, seconds=5)  # capped at max_backoff
    assert get_feed(engine, "flaky").consecutive_errors == 3

    hits = server.hits[path]
    skipped = c.collect_feed(f, respect_backoff=True)
    assert skipped.status == "backoff" and server.hits[path] == hits  # no request while backing off

    server.route(path, file="rss20.xml")
    recovered = c.collect_feed(f)
    assert recovered.status == "ok"
    state = get_feed(engine, "flaky")
    assert (state.consecutive_errors, state.last_error, state.last_status) == (0, None, "ok")


def test_retry_after_extends_the_backoff(engine: sa.Engine, server: FeedServer, tmp_path: Path) -> None:
    url = server.route(unique("busy"), status=503, body=b"busy", headers={"Retry-After": "7200"})
    c = collector(tmp_path, engine, [feed("busy", url, every="10m")])
    before = utcnow()
    c.collect_feed(c.settings.feeds[0])
    assert get_feed(engine, "busy").next_poll_at - before >= timedelta(hours=2)


# ----------------------------------------------------------------------------- redirects


def test_permanent_redirect_updates_the_stored_url(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    old = unique("old")
    url = server.route(old, status=301, location="/feeds/rss10.rdf")
    c = collector(tmp_path, engine, [feed("moving", url)])
    first = c.collect_feed(c.settings.feeds[0])
    assert first.status == "ok" and first.moved_to == server.url("/feeds/rss10.rdf")
    assert get_feed(engine, "moving").current_url == server.url("/feeds/rss10.rdf")
    second = c.collect_feed(c.settings.feeds[0])
    assert second.status == "not_modified"
    assert server.hits[old] == 1  # polled at the new URL directly

    # The configured URL changes: the old redirect and validators are forgotten.
    c2 = collector(tmp_path, engine, [feed("moving", server.url("/feeds/atom03.xml"))])
    third = c2.collect_feed(c2.settings.feeds[0])
    assert third.status == "ok" and third.new == 2
    assert get_feed(engine, "moving").current_url is None


def test_temporary_redirect_keeps_the_configured_url(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    path = unique("temp")
    url = server.route(path, status=302, location="/feeds/atom03.xml")
    c = collector(tmp_path, engine, [feed("temp", url)])
    c.collect_feed(c.settings.feeds[0])
    c.collect_feed(c.settings.feeds[0])
    assert get_feed(engine, "temp").current_url is None and server.hits[path] == 2


# ----------------------------------------------------------------------------- concurrency and events


def test_many_feeds_concurrently_on_one_database(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    feeds = []
    for i in range(12):
        items = [(f"Story {i}-{j} about Nvidia", f"https://many.example.com/{i}/{j}", f"{i}-{j}", "Text.")
                 for j in range(25)]  # fmt: skip
        feeds.append(feed(f"many{i}", server.route(unique(f"many{i}"), body=rss(*items))))
    c = collector(tmp_path, engine, feeds, concurrency=8)
    results = c.collect_many(c.settings.feeds)
    assert {r.status for r in results} == {"ok"} and sum(r.new for r in results) == 300
    assert article_count(engine) == 300


def test_events_describe_the_stored_articles(engine: sa.Engine, server: FeedServer, tmp_path: Path) -> None:
    c = collector(tmp_path, engine, [feed("zh", server.url("/feeds/zh_utf8.xml"))])
    result = c.collect_feed(c.settings.feeds[0])
    assert len(result.events) == 2
    stored = {row.id: row for row in rows(engine)}
    for event in result.events:
        row = stored[event.article_id]
        assert (event.title, event.url, event.language, event.published_at) == (
            row.title,
            row.url,
            row.language,
            row.published_at,
        )
        assert event.feed == "zh" and not event.is_update and event.language == "zh"


# ----------------------------------------------------------------------------- queries


def test_article_queries(engine: sa.Engine, server: FeedServer, tmp_path: Path) -> None:
    feeds = [feed("rss", server.url("/feeds/rss20.xml")), feed("zh", server.url("/feeds/zh_utf8.xml")),
             feed("edge", server.url("/feeds/edge_entries.xml"))]  # fmt: skip
    c = collector(tmp_path, engine, feeds)
    c.collect_many(c.settings.feeds)
    everything = list_articles(engine, ArticleFilter(limit=100))
    assert len(everything) == 13
    assert [a.happened_at for a in everything] == sorted((a.happened_at for a in everything), reverse=True)
    assert {a.feed for a in everything} == {"rss", "zh", "edge"}
    assert [a.title for a in list_articles(engine, ArticleFilter(search="burry DOT-COM"))] == [
        "Michael Burry bets against AI stocks, warns of dot-com repeat"
    ]
    assert len(list_articles(engine, ArticleFilter(search="100%"))) == 0  # % is literal, not a wildcard
    assert {a.feed for a in list_articles(engine, ArticleFilter(language="zh"))} == {"zh"}
    assert len(list_articles(engine, ArticleFilter(search="泡沫"))) == 1
    assert {a.title for a in list_articles(engine, ArticleFilter(feeds=("rss",)))} == {
        "Nvidia loses $140bn in days as Google pitches TPUs to Meta",
        "Michael Burry bets against AI stocks, warns of dot-com repeat",
        "Marvell lands second custom ASIC win with a hyperscaler",
    }
    window = list_articles(engine, ArticleFilter(
        since=everything[0].happened_at.replace(year=2025, month=11, day=24, hour=0, minute=0, second=0),
        until=everything[0].happened_at.replace(year=2025, month=11, day=25, hour=0, minute=0, second=0),
    ))  # fmt: skip
    assert {a.title for a in window} == {
        "AI泡沫论再起：闭环融资引发担忧", "No link, only a guid: SK Hynix HBM4 samples",
        "An entry without a title, a link or an id: Samsung wins an HBM3E qualification for Nvidia's "
        "accelerators.",
    }  # fmt: skip
    assert len(list_articles(engine, ArticleFilter(limit=2, offset=1))) == 2
    assert list_articles(engine, ArticleFilter(topics=("nvidia",))) == []  # nothing scored yet


def test_feed_files_present() -> None:
    for name in FORMAT_FILES:
        assert (FEEDS_DIR / name).is_file(), name


def test_control_characters_surrogates_and_huge_urls_do_not_break_storage(
    engine: sa.Engine, server: FeedServer, tmp_path: Path
) -> None:
    # PostgreSQL refuses NUL in text and lone surrogates in UTF-8: one such entry must not sink the feed.
    long_url = "https://long.example.com/" + "a" * 2500
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Nasty</title>'
        b"<item><title>Nul\x00 and bell\x07 in a title</title><link>https://nasty.example.com/1</link>"
        b"<description>Surrogate &#xD800; here</description></item>"
        b"<item><title>A very long link</title><link>" + long_url.encode() + b"</link></item>"
        b"<item><title>Fine</title><link>https://nasty.example.com/3</link></item>"
        b"</channel></rss>"
    )
    c = collector(tmp_path, engine, [feed("nasty", server.route(unique("nasty"), body=body))])
    result = c.collect_feed(c.settings.feeds[0])
    assert result.status in ("ok", "malformed") and result.new == 3, result.error
    stored = {row.title: row for row in rows(engine)}
    assert "Nul and bell in a title" in stored
    assert "\ud800" not in stored["Nul and bell in a title"].summary
    assert stored["A very long link"].url is None  # too long for the column: kept out, the key still dedupes
    again = c.collect_feed(c.settings.feeds[0])
    assert again.new == 0
