"""Fetching over real HTTP from the local feed server: timeouts, deadline, size cap, redirects, 304, gzip,
and where a feed may point (SSRF)."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import make_settings
from feedserver import FeedServer

from monitor.collect import Collector
from monitor.collect.fetch import Fetcher, FetchError, parse_retry_after
from monitor.config import CollectConfig, ConfigError, load_config
from monitor.store.feeds import get_feed


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def fetcher(**overrides: object) -> Fetcher:
    values: dict[str, object] = {"connect_timeout": "2s", "read_timeout": "2s", "total_timeout": "5s"}
    values.update(overrides)
    return Fetcher(CollectConfig.model_validate(values))


def fetch_error(f: Fetcher, url: str, **kwargs: object) -> FetchError:
    with pytest.raises(FetchError) as info:
        f.fetch(url, **kwargs)
    return info.value


def test_plain_fetch_sends_user_agent_and_returns_validators(server: FeedServer) -> None:
    f = fetcher(user_agent="test-agent/1.0 (+http://example.test)")
    response = f.fetch(server.url("/feeds/rss20.xml"))
    assert response.status == 200
    assert response.body.startswith(b"<?xml")
    assert response.etag and response.last_modified
    assert (
        server.requests_for("/feeds/rss20.xml")[-1]["user-agent"] == "test-agent/1.0 (+http://example.test)"
    )


def test_conditional_get_returns_304_without_body(server: FeedServer) -> None:
    f = fetcher()
    first = f.fetch(server.url("/feeds/atom10.xml"))
    again = f.fetch(server.url("/feeds/atom10.xml"), etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and again.status == 304 and again.body == b""
    headers = server.requests_for("/feeds/atom10.xml")[-1]
    assert headers["if-none-match"] == first.etag
    assert headers["if-modified-since"] == first.last_modified


def test_last_modified_alone_gives_304(server: FeedServer) -> None:
    server.route("/lm-only", file="rss10.rdf", etag=False)
    first = fetcher().fetch(server.url("/lm-only"))
    assert first.etag is None and first.last_modified
    assert fetcher().fetch(server.url("/lm-only"), last_modified=first.last_modified).not_modified


def test_gzip_body_is_decoded(server: FeedServer) -> None:
    url = server.route("/gz", file="rss20.xml", gzip=True)
    response = fetcher().fetch(url)
    assert response.headers["content-encoding"] == "gzip"
    assert b"Nvidia loses $140bn" in response.body


@pytest.mark.parametrize("code", [301, 308])
def test_permanent_redirect_is_reported(server: FeedServer, code: int) -> None:
    url = server.route(f"/perm{code}", status=code, location="/feeds/rss10.rdf")
    response = fetcher().fetch(url)
    assert response.status == 200
    assert response.permanent_url == server.url("/feeds/rss10.rdf")
    assert response.redirects == [(code, server.url("/feeds/rss10.rdf"))]


@pytest.mark.parametrize("code", [302, 303, 307])
def test_temporary_redirect_is_followed_but_not_permanent(server: FeedServer, code: int) -> None:
    url = server.route(f"/temp{code}", status=code, location=server.url("/feeds/rss10.rdf"))
    response = fetcher().fetch(url)
    assert response.status == 200 and response.permanent_url is None


def test_chain_with_a_temporary_hop_is_not_permanent(server: FeedServer) -> None:
    server.route("/chain-b", status=301, location="/feeds/atom03.xml")
    url = server.route("/chain-a", status=302, location="/chain-b")
    response = fetcher().fetch(url)
    assert response.status == 200 and response.permanent_url is None


def test_redirect_loop_is_named(server: FeedServer) -> None:
    server.route("/loop-a", status=301, location="/loop-b")
    server.route("/loop-b", status=302, location="/loop-a")
    error = fetch_error(fetcher(), server.url("/loop-a"))
    assert error.reason == "redirect_loop"
    assert "redirect loop" in str(error) and "/loop-a -> " in str(error) and "/loop-b" in str(error)


def test_too_many_redirects(server: FeedServer) -> None:
    for i in range(4):
        server.route(f"/hop{i}", status=307, location=f"/hop{i + 1}")
    server.route("/hop4", file="rss20.xml")
    error = fetch_error(fetcher(max_redirects=2), server.url("/hop0"))
    assert error.reason == "too_many_redirects" and "more than 2 redirects" in str(error)
    assert fetcher(max_redirects=5).fetch(server.url("/hop0")).status == 200


def test_redirect_to_a_non_http_url_is_refused(server: FeedServer) -> None:
    url = server.route("/to-file", status=302, location="file:///etc/passwd")
    error = fetch_error(fetcher(), url)
    assert error.reason == "invalid_url" and "file:///etc/passwd" in str(error)


@pytest.mark.parametrize("url", ["ftp://example.com/feed.xml", "file:///etc/passwd", "feed.xml", "http://"])
def test_non_http_url_is_an_error(url: str) -> None:
    error = fetch_error(fetcher(), url)
    assert error.reason == "invalid_url"
    assert url in str(error)


@pytest.mark.parametrize(("status", "reason"), [(404, "http_4xx"), (410, "http_4xx"), (500, "http_5xx")])
def test_http_errors(server: FeedServer, status: int, reason: str) -> None:
    url = server.route(f"/status{status}", status=status, body=b"nope", content_type="text/plain")
    error = fetch_error(fetcher(), url)
    assert error.reason == reason and error.http_status == status
    assert f"HTTP {status}" in str(error)


def test_retry_after_is_read_from_503(server: FeedServer) -> None:
    url = server.route("/busy", status=503, body=b"later", headers={"Retry-After": "120"})
    error = fetch_error(fetcher(), url)
    assert error.reason == "http_5xx" and error.retry_after == 120


def test_parse_retry_after_http_date() -> None:
    now = time.time()
    value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 300))
    assert 290 <= parse_retry_after(value, now=now) <= 301
    assert parse_retry_after("soon") is None


def test_empty_body_is_an_error(server: FeedServer) -> None:
    url = server.route("/empty", body=b"")
    error = fetch_error(fetcher(), url)
    assert error.reason == "empty" and "empty response body" in str(error)


def test_hanging_server_times_out_on_read(server: FeedServer) -> None:
    url = server.route("/hang", hang=True)
    started = time.monotonic()
    error = fetch_error(fetcher(read_timeout="1s", total_timeout="10s"), url)
    elapsed = time.monotonic() - started
    assert error.reason == "timeout" and "read timeout" in str(error)
    assert 0.9 <= elapsed < 3


def test_trickling_body_hits_the_total_deadline(server: FeedServer) -> None:
    # One byte every 0.2 s never trips the 2 s read timeout; the 1.5 s total deadline stops it.
    url = server.route("/trickle", file="rss20.xml", trickle=0.2)
    started = time.monotonic()
    error = fetch_error(fetcher(read_timeout="2s", total_timeout="1.5s"), url)
    elapsed = time.monotonic() - started
    assert error.reason == "timeout" and "total deadline" in str(error)
    assert elapsed < 2.5


def test_trickling_headers_hit_the_total_deadline(server: FeedServer) -> None:
    url = server.route("/trickle-head", file="rss20.xml", trickle_headers=0.2)
    started = time.monotonic()
    error = fetch_error(fetcher(read_timeout="2s", total_timeout="1.5s"), url)
    assert error.reason == "timeout" and "total deadline" in str(error)
    assert time.monotonic() - started < 2.5


def test_declared_oversized_body_is_refused_unread(server: FeedServer) -> None:
    url = server.route("/huge", file="rss20.xml", content_length=50_000_000)
    error = fetch_error(fetcher(max_bytes=1_000_000), url)
    assert error.reason == "too_large" and "50,000,000 bytes" in str(error) and "not read" in str(error)


def test_endless_body_stops_at_the_cap(server: FeedServer) -> None:
    url = server.route("/endless", endless=True)
    started = time.monotonic()
    error = fetch_error(fetcher(max_bytes=200_000), url)
    assert error.reason == "too_large" and "200,000-byte limit" in str(error)
    assert time.monotonic() - started < 3


def test_gzip_bomb_stops_at_the_cap(server: FeedServer) -> None:
    bomb = b"<rss>" + b" " * 20_000_000
    url = server.route("/bomb", body=bomb, gzip=True)
    assert len(gzip.compress(bomb)) < 100_000
    error = fetch_error(fetcher(max_bytes=1_000_000), url)
    assert error.reason == "too_large"


def test_connection_refused_is_a_connect_error() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    error = fetch_error(fetcher(), f"http://127.0.0.1:{port}/feed")
    assert error.reason == "connect" and f"127.0.0.1:{port}" in str(error)


def test_close_cancels_a_fetch_in_flight(server: FeedServer) -> None:
    url = server.route("/hang-cancel", hang=True)
    f = fetcher(read_timeout="30s", total_timeout="60s")
    errors: list[FetchError] = []

    def run() -> None:
        try:
            f.fetch(url)
        except FetchError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    f.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert errors and errors[0].reason == "cancelled"


def test_timeouts_come_from_settings() -> None:
    f = fetcher(connect_timeout="3s", read_timeout="7s")
    assert f.config.read_timeout == timedelta(seconds=7)
    assert f._client.timeout.connect == 3 and f._client.timeout.read == 7


# ----------------------------------------------------------------------------- where feeds may point (SSRF)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.10.20:8080/feed",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[fe80::1]/feed",
    ],
)
def test_link_local_and_cloud_metadata_are_refused_by_default(url: str) -> None:
    error = fetch_error(fetcher(), url)
    assert error.reason == "refused" and error.url == url
    assert "link-local or cloud metadata" in str(error) and "collect.allow_networks" in str(error)


def test_a_redirect_to_cloud_metadata_is_refused_at_that_hop(server: FeedServer) -> None:
    start = server.route("/to-metadata", status=302, location="http://169.254.169.254/latest/meta-data/")
    error = fetch_error(fetcher(), start)
    assert error.reason == "refused" and error.url == "http://169.254.169.254/latest/meta-data/"
    assert f"redirected from {start}" in str(error)


def test_the_monitors_own_port_is_refused_directly_and_by_redirect(server: FeedServer) -> None:
    with FeedServer() as monitor:  # stands in for `monitor run`'s HTTP server on this host
        api = monitor.url("/api/articles")
        bounce = server.route("/to-own-port", status=307, location=api)
        own = Fetcher(CollectConfig(), own_port=monitor.port)
        for url in (api, bounce, f"http://localhost:{monitor.port}/api/articles"):
            error = fetch_error(own, url)
            assert error.reason == "refused", url
            assert f":{monitor.port} is this monitor's own HTTP port" in str(error)
        assert monitor.requests_for("/api/articles") == []
        allowed = Fetcher(CollectConfig(allow_networks=["127.0.0.1"]), own_port=monitor.port)
        assert fetch_error(allowed, api).reason == "http_4xx"  # reached: the stand-in has no such path


def test_loopback_is_allowed_by_default_and_refused_when_private_is_off(server: FeedServer) -> None:
    by_name = f"http://localhost:{server.port}/feeds/rss20.xml"
    assert fetcher().fetch(by_name).status == 200
    before = len(server.requests_for("/feeds/rss20.xml"))
    error = fetch_error(fetcher(allow_private=False), by_name)
    assert error.reason == "refused"
    assert "localhost resolves to " in str(error) and "collect.allow_private is false" in str(error)
    assert len(server.requests_for("/feeds/rss20.xml")) == before  # refused before connecting
    exception = fetcher(allow_private=False, allow_networks=["127.0.0.0/8", "::1"])
    assert exception.fetch(by_name).status == 200


def test_deny_networks_refuses_a_range(server: FeedServer) -> None:
    error = fetch_error(fetcher(deny_networks=["127.0.0.0/8"]), server.url("/feeds/rss20.xml"))
    assert error.reason == "refused" and "in collect.deny_networks (127.0.0.0/8)" in str(error)


def test_a_bad_network_in_the_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("collect:\n  deny_networks: [10.0.0.0/8, 10.1.2.3/8]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert str(path) in message and "collect.deny_networks.1" in message and "host bits set" in message


def test_a_refused_feed_is_a_failed_feed_not_a_crash(engine: sa.Engine, tmp_path: Path) -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    settings = make_settings(tmp_path, feeds=[{"name": "metadata", "url": url}])
    result = Collector(settings, engine).collect_feed(settings.feed("metadata"))
    assert result.status == "error" and result.reason == "refused"
    state = get_feed(engine, "metadata")
    assert state is not None and "169.254.169.254 is link-local or cloud metadata" in (state.last_error or "")


def test_run_port_option_is_the_own_port_refused(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    """`monitor run --port 8123` serves on 8123, so that is the port feeds must not point at."""
    from monitor.cli._run import Runner

    runner = Runner(make_settings(tmp_path), sqlite_engine, port=8123)
    assert Collector(runner.settings, sqlite_engine).fetcher.policy.own_port == 8123
    error = fetch_error(Collector(runner.settings, None).fetcher, "http://127.0.0.1:8123/api/articles")
    assert error.reason == "refused" and "own HTTP port" in str(error)
