"""Real `monitor` processes for operations tests: start, wait for HTTP, kill -9, stop with SIGTERM.

Each process writes its output to a log file under the test's tmp_path (read back for assertions).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import TOPICS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, database_url: str, **overrides: Any) -> Path:
    """A config file for a subprocess: the test topics, quick leader checks."""
    data: dict[str, Any] = {
        "database_url": database_url,
        "log_format": "json",
        "topics": TOPICS,
        "model": {"multilingual": None},
        "feeds": [],
        "leader": {"check_every": "1s"},
    }
    data.update(overrides)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class MonitorProcess:
    """One `python -m monitor ...` subprocess with its own log file."""

    def __init__(self, args: list[str], config: Path, log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self.args = args
        environment = {
            **os.environ,
            "MONITOR_CONFIG": str(config),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        for name in (
            "MONITOR_DATABASE_URL",
            "SLACK_BOT_TOKEN",
            "SLACK_CHANNEL",
            "SLACK_WEBHOOK_URL",
            "SLACK_API_URL",
        ):
            environment.pop(name, None)
        environment.update(env or {})
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", *args],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(  # noqa: B904 - the timeout is the failure being reported
                f"{self.args} did not exit within {timeout}s of SIGTERM\n{self.output()[-3000:]}"
            )
        finally:
            self._log.close()
        return code, time.monotonic() - started

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (non-JSON lines, e.g. click's error output, are skipped)."""
        records = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    records.append(json.loads(line))
        return records

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        if not self._log.closed:
            self._log.close()


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except json.JSONDecodeError:
            return exc.code, body.decode(errors="replace")


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def healthz(port: int) -> dict[str, Any] | None:
    status, body = get_json(f"http://127.0.0.1:{port}/healthz", timeout=2)
    return body if status == 200 and isinstance(body, dict) else None


def leader_state(port: int) -> bool | None:
    """What the replica's /healthz says about leadership (None: not answering or not healthy yet)."""
    body = healthz(port)
    return None if body is None else body.get("leader")
