"""Operations: bad start-up conditions get a clear answer; SIGTERM is prompt even while Slack is slow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.ops import check_data_dir, sqlite_path
from monitor.store.db import DatabaseError
from tests.conftest import PG_SERVER_URL
from tests.feedserver import FeedServer
from tests.procs import MonitorProcess, free_port, get_json, wait_for, write_config
from tests.slackserver import SlackServer


def test_sqlite_path():
    assert sqlite_path("sqlite:////data/monitor.db") == Path("/data/monitor.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql://u@h/db") is None


def test_data_dir_full_is_a_clear_error(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'data' / 'monitor.db'}"
    check_data_dir(url)  # plenty of room here
    with pytest.raises(DatabaseError, match=r"MB free on the device of .*data.*monitor\.db"):
        check_data_dir(url, min_free_bytes=1 << 62)


def test_read_only_data_dir_is_a_clear_error_at_start(tmp_path: Path):
    """`monitor run` on a read-only database folder (a volume mounted :ro): exits non-zero, naming it."""
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path / "monitor.yaml", f"sqlite:///{data / 'monitor.db'}")
    command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--port", str(free_port())]
    if os.geteuid() == 0:
        # root ignores permission bits: make the folder a read-only bind mount in a private mount namespace.
        if shutil.which("unshare") is None:
            pytest.fail("util-linux `unshare` is needed to mount the folder read-only as root")
        script = f'mount --bind -o ro "{data}" "{data}" && exec "$@"'
        command = ["unshare", "--mount", "sh", "-c", script, "sh", *command]
    else:
        data.chmod(0o555)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1]
    )
    assert result.returncode != 0
    assert f"the database folder {data} is not writable" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
@pytest.mark.slow
def test_unreachable_database_at_start_is_retried_and_reported(tmp_path: Path, pg_server):
    """The database does not exist yet: `monitor run` keeps serving /readyz (503, naming the problem),
    retries with backoff, and starts once the database appears."""
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    name = f"monitor_late_{os.getpid()}"
    url = sa.engine.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    port = free_port()
    proc = MonitorProcess(
        ["run"], write_config(tmp_path / "monitor.yaml", url, http={"port": port}), tmp_path / "run.log"
    )
    try:

        def not_ready() -> dict | None:
            status, body = get_json(f"http://127.0.0.1:{port}/readyz")
            return body if status == 503 and body.get("database") == "unreachable" else None

        body = wait_for(not_ready, 120, what="/readyz reports the unreachable database")
        assert any(name in problem for problem in body["problems"]), body
        wait_for(lambda: "retrying in" in proc.output(), 60, what="the retry is logged")
        assert proc.alive()

        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        wait_for(
            lambda: get_json(f"http://127.0.0.1:{port}/readyz")[0] == 200, 90, what="ready after the retry"
        )
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, what="healthy")
        code, seconds = proc.terminate()
        assert code == 0 and seconds < 10
    finally:
        proc.close()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["rate-limited", "no-answer"])
def test_sigterm_during_slack_retry_wait_exits_promptly(tmp_path: Path, failure: str):
    """Slack answers 429 Retry-After: 120 (or never answers): SIGTERM still ends `monitor run` (0, < 10 s)."""
    with FeedServer() as feeds, SlackServer() as slack:
        feeds.route("/wire.xml", file="google_news.xml")
        if failure == "rate-limited":
            slack.fail("chat.postMessage", status=429, retry_after="120", times=100)
        else:
            slack.fail("chat.postMessage", hang=120)
        port = free_port()
        config = write_config(
            tmp_path / "monitor.yaml",
            f"sqlite:///{tmp_path / 'monitor.db'}",
            feeds=[{"name": "wire", "url": feeds.url("/wire.xml")}],
            alerts=[
                {
                    "name": "nvidia-volume",
                    "topic": "nvidia",
                    "metric": "volume",
                    "window": "3650d",
                    "above": 0,
                    "min_articles": 1,
                    "for": "0s",
                }
            ],
            collect={"jitter": "0s"},
            notify={"deliver_every": "1s", "timeout": "60s"},
            http={"port": port},
        )
        env = {"SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "C0ALERTS1", "SLACK_API_URL": slack.api_url}
        proc = MonitorProcess(["run"], config, tmp_path / "run.log", env=env)
        try:
            wait_for(lambda: slack.calls("chat.postMessage"), 120, what="a delivery attempt")
            time.sleep(1.0)  # now waiting: on the Retry-After, or on the unanswered request
            code, seconds = proc.terminate()
        finally:
            proc.close()
        assert code == 0, proc.output()[-2000:]
        assert seconds < 10
        assert slack.top_level() == []  # nothing was posted, so nothing can be lost: the row stays queued
