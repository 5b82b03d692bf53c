"""Operations: bad start-up conditions get a clear answer; SIGTERM is prompt even while Slack is slow."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.ops import check_data_dir, sqlite_path
from monitor.store.db import DatabaseError, check_writable, safe_url
from tests.conftest import PG_SERVER_URL, drop_pg_database, make_pg_database
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


# ----------------------------------------------------------------------------- readiness while running


def test_check_writable_reports_a_database_that_refuses_writes(engine, db_url) -> None:  # noqa: ANN001
    """Reads still work, writes do not: a SQLite file whose write lock another process holds, a read-only
    PostgreSQL. The probe says so, naming the database; it passes again once writes can start."""
    check_writable(engine, timeout=0.5)
    if engine.dialect.name == "sqlite":
        other = sqlite3.connect(str(sqlite_path(db_url)), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        release = other.close  # closing ends the transaction and its lock
        expected = "database is locked"
    else:
        name = sa.engine.make_url(db_url).database
        admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))

        def release() -> None:
            with admin.connect() as connection:
                connection.execute(sa.text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
            admin.dispose()

        engine.dispose()  # new sessions pick the setting up
        expected = "is read-only"
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT count(*) FROM alerts")).scalar()  # reads still work
        started = time.monotonic()
        with pytest.raises(DatabaseError, match=expected) as raised:
            check_writable(engine, timeout=0.5)
        assert time.monotonic() - started < 5
        assert str(raised.value).startswith("database at ") and safe_url(db_url) in str(raised.value)
    finally:
        release()
    engine.dispose()
    check_writable(engine, timeout=0.5)


def _ready(port: int) -> tuple[int, dict]:
    status, body = get_json(f"http://127.0.0.1:{port}/readyz")
    return status, body if isinstance(body, dict) else {}


def _run_compact(tmp_path: Path, url: str, port: int) -> MonitorProcess:
    """`monitor run` with the compact English model (quick to load), delivery every second, no feeds."""
    config = write_config(
        tmp_path / "monitor.yaml",
        url,
        model={"sentiment": "compact-en", "multilingual": None, "threads": 1},
        notify={"deliver_every": "1s"},
        http={"port": port},
    )
    return MonitorProcess(["run"], config, tmp_path / "run.log")


@pytest.mark.postgres
@pytest.mark.slow
def test_schema_dropped_under_a_running_app_is_upgraded_again(tmp_path: Path, pg_server) -> None:
    """The PostgreSQL schema is dropped and recreated empty under `monitor run`: jobs fail with `relation ...
    does not exist`; /readyz must not say "ready, database ok" meanwhile, and the schema comes back (upgraded
    again under the migration lock) without a restart."""
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    from monitor.store.db import create_db_engine
    from monitor.store.migrate import current_revision, head_revision

    url = make_pg_database("monitor_dropped")
    port = free_port()
    proc = _run_compact(tmp_path, url, port)
    engine = create_db_engine(url)
    try:
        wait_for(lambda: _ready(port)[0] == 200, 180, what="ready before the drop")
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        seen: list[dict] = []

        def not_ready_then_ready() -> bool:
            status, body = _ready(port)
            if status == 503:
                seen.append(body)
            return status == 200 and bool(seen)

        # Within one database check (15 s) the schema is back; until then /readyz names what is wrong.
        wait_for(not_ready_then_ready, 60, interval=0.1, what="/readyz 503, then ready again")
        problems = " | ".join(p for body in seen for p in body["problems"])
        assert "database schema missing" in problems or "does not exist" in problems, problems
        assert all(body["status"] == "not ready" for body in seen)
        assert current_revision(engine) == head_revision()
        assert any(
            r.get("message", "").startswith("database schema missing")
            and r["message"].endswith(": upgrading")
            for r in proc.log_records()
        ), proc.output()[-3000:]
        code, seconds = proc.terminate()
        assert code == 0 and seconds < 10
    finally:
        proc.close()
        engine.dispose()
        drop_pg_database(url)


@pytest.mark.slow
def test_locked_sqlite_database_makes_readyz_fail_until_released(tmp_path: Path) -> None:
    """Another process holds the SQLite write lock: `SELECT 1` still answers, every write fails after the busy
    timeout; /readyz reports it (503, `database is locked`) and recovers when the lock is released."""
    path = tmp_path / "monitor.db"
    port = free_port()
    proc = _run_compact(tmp_path, f"sqlite:///{path}", port)
    try:
        wait_for(lambda: _ready(port)[0] == 200, 180, what="ready before the lock")
        other = sqlite3.connect(str(path), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            # The next database check waits the 30 s busy timeout, then fails (so do the deliveries).
            status, body = wait_for(
                lambda: (r := _ready(port))[0] == 503 and r, 90, interval=0.5, what="/readyz 503"
            )
            assert body["database"] == "ok"  # reads still work: only the writes fail
            assert any("database is locked" in problem for problem in body["problems"]), body
        finally:
            other.close()
        wait_for(lambda: _ready(port)[0] == 200, 60, what="ready after the lock is released")
        code, seconds = proc.terminate()
        assert code == 0 and seconds < 10
    finally:
        proc.close()
