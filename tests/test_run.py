"""`monitor run` as a real subprocess: collects on schedule, serves HTTP, exits 0 within 10 s of SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from feedserver import FeedServer

from monitor.store.db import create_db_engine
from tests.procs import MonitorProcess, free_port, healthz, wait_for, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def article_count(db_url: str) -> int:
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM articles")).scalar_one()
    except sa.exc.OperationalError:
        return 0  # schema not there yet
    finally:
        engine.dispose()


def start(tmp_path: Path, server: FeedServer, port: int) -> tuple[MonitorProcess, str]:
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    config = write_config(
        tmp_path / "monitor.yaml",
        db_url,
        feeds=[
            {"name": "rss20", "url": server.url("/feeds/rss20.xml"), "every": "1m"},
            {"name": "zh", "url": server.url("/feeds/zh_utf8.xml"), "every": "1m"},
            # Answers nothing for 30 s: a poll is stuck in it when SIGTERM arrives.
            {"name": "stuck", "url": server.route("/run-hang", hang=True), "every": "1m"},
        ],
        collect={"read_timeout": "30s", "total_timeout": "60s", "jitter": "1s"},
    )
    process = MonitorProcess(["run", "--port", str(port)], config, tmp_path / "run.log")
    return process, db_url


def test_run_collects_serves_and_stops_on_sigterm(tmp_path: Path, server: FeedServer) -> None:
    port = free_port()
    process, db_url = start(tmp_path, server, port)
    try:
        health = wait_for(lambda: healthz(port), timeout=120, what="/healthz ok")
        assert health["scheduler"]["running"] and health["model"]["loaded"]
        wait_for(lambda: article_count(db_url) >= 5, timeout=60, what="scheduled collection of both feeds")
        wait_for(lambda: server.hits["/run-hang"] >= 1, timeout=30, what="the stuck feed being polled")
        code, seconds = process.terminate(timeout=10)
        assert code == 0, process.output()[-3000:]
        assert seconds < 10
        assert "signal received, shutting down" in process.output()
    finally:
        process.close()


def test_sigint_during_start_up_exits_cleanly(tmp_path: Path, server: FeedServer) -> None:
    port = free_port()
    process, _ = start(tmp_path, server, port)
    try:
        # The HTTP server is up before the model has loaded: interrupt the start-up there.
        wait_for(lambda: healthz(port) is not None or process.output().count("HTTP server listening"),
                 timeout=60, what="HTTP server up")  # fmt: skip
        started = time.monotonic()
        process.process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
        assert code == 0, process.output()[-3000:]
        assert time.monotonic() - started < 10
    finally:
        process.close()
