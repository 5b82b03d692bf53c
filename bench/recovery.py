"""Recovery after `kill -9`: how long a restarted `monitor run` takes to score the backlog a killed pass left.

    python bench/recovery.py [--articles 3000] [--db sqlite|postgresql|both] [--model compact-en|default]
                             [--json out.json]

For each database: a fresh database with `--articles` stored-but-unscored articles (exactly what a pass
killed between storing and scoring leaves; tests/seed.py `seed_unscored`), then the real console script
`monitor run` (.venv/bin/monitor) on it, no feeds. The clock starts when the process is spawned; the database
is polled until every article has a score. Printed: the time to "scheduler started" (model loading), the
time until all are scored, and the recovery line `monitor run` logs (articles, seconds of scoring). Rules are
not evaluated until that line (tests/test_recovery.py checks the order).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from seed import seed_unscored  # noqa: E402

from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402
from monitor.store.tables import ArticleScore  # noqa: E402
from tests.conftest import drop_pg_database, make_pg_database  # noqa: E402
from tests.procs import free_port, write_config  # noqa: E402

RECOVERY_MESSAGE = "scored articles a previous run left unscored"


def monitor_command() -> list[str]:
    """The installed console script (as users run it), else the module."""
    script = ROOT / ".venv" / "bin" / "monitor"
    if script.exists():
        return [str(script)]
    found = shutil.which("monitor")
    return [found] if found else [sys.executable, "-m", "monitor"]


def scored(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(ArticleScore.__table__)).scalar_one()


def log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def first(records: list[dict[str, Any]], message: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get("message") == message), None)


def spawn(config: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "MONITOR_CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for name in ("MONITOR_DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_WEBHOOK_URL"):
        env.pop(name, None)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*monitor_command(), "run", "--port", str(free_port())],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def measure(db: str, articles: int, model: str, workdir: Path, timeout: float) -> dict[str, Any]:
    url = f"sqlite:///{workdir / 'monitor.db'}" if db == "sqlite" else make_pg_database("monitor_bench")
    engine = create_db_engine(url)
    try:
        upgrade(engine)
        seed_unscored(engine, articles)
        model_config = {"multilingual": None} if model == "default" else {"sentiment": model}
        config = write_config(workdir / f"{db}.yaml", url, model=model_config)
        log_path = workdir / f"{db}.log"
        started = time.monotonic()
        process = spawn(config, log_path)
        done_at = None
        try:
            while time.monotonic() - started < timeout and process.poll() is None:
                if scored(engine) >= articles:
                    done_at = time.monotonic()
                    break
                time.sleep(0.2)
            time.sleep(0.5)  # the recovery line is logged right after the last page is stored
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        records = log_records(log_path)
        if done_at is None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise SystemExit(f"{db}: not all {articles} articles scored within {timeout:g}s\n{tail}")
        scheduler = first(records, "scheduler started")
        recovery = first(records, RECOVERY_MESSAGE) or {}
        return {
            "db": db,
            "articles": articles,
            "model": model,
            "all_scored_after_s": round(done_at - started, 2),
            "scheduler_started_after_s": since_first_line(records, scheduler),
            "recovery_logged_articles": recovery.get("articles"),
            "recovery_logged_seconds": recovery.get("seconds"),
        }
    finally:
        engine.dispose()
        if db == "postgresql":
            drop_pg_database(url)


def since_first_line(records: list[dict[str, Any]], record: dict[str, Any] | None) -> float | None:
    """Seconds from the process's first log line to `record` (the model loads in between)."""
    if not records or record is None:
        return None
    first_ts, ts = (datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in (records[0], record))
    return round((ts - first_ts).total_seconds(), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=3000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--model", default="compact-en", help="model.sentiment: compact-en (quick) or default"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = []
    for db in databases:
        with tempfile.TemporaryDirectory(prefix="recovery-bench-") as tmp:
            result = measure(db, args.articles, args.model, Path(tmp), args.timeout)
        results.append(result)
        print(
            f"{db:<10} {result['articles']:>6} unscored articles ({args.model}): all scored "
            f"{result['all_scored_after_s']:.1f} s after spawn; scheduler started at "
            f"{result['scheduler_started_after_s']} s; logged recovery: "
            f"{result['recovery_logged_articles']} articles in {result['recovery_logged_seconds']} s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
