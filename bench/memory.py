"""Resident memory of a real `monitor run` process after it has collected and scored 1,000 articles.

    python bench/memory.py [--articles 1000] [--feeds 10] [--model default] [--threads N] [--json out.json]

A local HTTP server (tests/feedserver.py) on 127.0.0.1 serves --feeds RSS feeds holding --articles distinct
AI-chip headlines between them (bench/collect.py's generator: companies, chips, HBM, the AI-bubble debate,
one entry in ten in Chinese, an HTML summary each). A temporary config points `monitor run` (the console
script, as deployed) at them: a 30 s `every` and no jitter, so every feed is polled at start-up, the four
topics of config/monitor.yaml, `model.sentiment` = --model, a fresh SQLite database
(MONITOR_DATABASE_URL), a free port (MONITOR_HTTP_PORT) and no Slack (alerts would go to the console; no
rules are configured). The benchmark polls the database until every article has a row in article_scores,
then reads VmRSS (resident now) and VmHWM (the peak) from /proc/PID/status; RssAnon is the process's own
heap (model weights, activations, Python objects), RssFile the mapped libraries and files (torch's shared
libraries are most of it). It reads them again after --settle seconds idle, then stops the process with
SIGTERM and checks it exits 0. The figure to report is VmRSS after scoring; the floor is <= 600 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from collect import make_feed  # noqa: E402  (bench/collect.py)
from feedserver import FeedServer  # noqa: E402

from monitor.config import load_config  # noqa: E402
from tests.procs import free_port, wait_for, write_config  # noqa: E402

FLOOR_MB = 600
STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def monitor_command() -> list[str]:
    """The `monitor` console script of the project's venv (as deployed), else the one on PATH."""
    for candidate in (ROOT / ".venv" / "bin" / "monitor", shutil.which("monitor")):
        if candidate and Path(candidate).is_file():
            return [str(candidate)]
    return [sys.executable, "-m", "monitor"]


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in MB (from /proc/PID/status, given in kB)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def show(memory: dict[str, float]) -> str:
    return (
        f"RSS {memory['VmRSS']:.0f} MB (anon {memory['RssAnon']:.0f}, files {memory['RssFile']:.0f}), "
        f"peak {memory['VmHWM']:.0f} MB"
    )


def counts(db_path: Path) -> tuple[int, int]:
    """(articles stored, articles scored); (0, 0) before the schema exists."""
    if not db_path.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as connection:
            articles = connection.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
            scored = connection.execute("SELECT COUNT(*) FROM article_scores").fetchone()[0]
    except sqlite3.OperationalError:  # no tables yet (migrating), or locked for longer than the timeout
        return 0, 0
    return articles, scored


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--feeds", type=int, default=10, help="feeds the articles are spread over")
    parser.add_argument("--model", default="default", help="model.sentiment: default, compact-en, a folder")
    parser.add_argument(
        "--threads", type=int, default=None, help="model.threads (default: the monitor's, the usable cores)"
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before the second reading")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for the scores")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    feeds = max(1, min(args.feeds, args.articles))
    per_feed = math.ceil(args.articles / feeds)
    sizes = [min(per_feed, args.articles - i * per_feed) for i in range(feeds)]
    sizes = [size for size in sizes if size > 0]

    topics = load_config(ROOT / "config" / "monitor.yaml", environ={}).topics
    rng = random.Random(42)
    start = datetime.now(UTC).replace(microsecond=0)  # fresh entries: nothing is old enough for retention
    with tempfile.TemporaryDirectory(prefix="monitor-memory-") as tmp, FeedServer(root=Path(tmp)) as server:
        folder = Path(tmp)
        for i, size in enumerate(sizes):
            server.route(
                f"/memory/{i}.xml",
                body=make_feed(i, size, rng, start),
                content_type="application/rss+xml; charset=utf-8",
            )
        db_path = folder / "monitor.db"
        database_url = f"sqlite:///{db_path}"
        model = {"sentiment": args.model, "multilingual": None}
        if args.threads:
            model["threads"] = args.threads
        config = write_config(
            folder / "monitor.yaml",
            database_url,
            feeds=[
                {"name": f"chips-{i}", "url": server.url(f"/memory/{i}.xml"), "every": "30s"}
                for i in range(len(sizes))
            ],
            topics={name: topic.model_dump() for name, topic in topics.items()},
            model=model,
            collect={"jitter": "0s"},
        )
        port = free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SLACK_", "MONITOR_"))  # no Slack, nothing but this config
        }
        env.update(
            MONITOR_DATABASE_URL=database_url,
            MONITOR_HTTP_PORT=str(port),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        command = [*monitor_command(), "--config", str(config), "run"]
        log_path = folder / "monitor.log"
        print(
            f"{args.articles} articles in {len(sizes)} feeds on {server.base_url}; model {args.model}; "
            f"{' '.join(command[:1])} run on port {port}",
            flush=True,
        )
        with log_path.open("wb") as log:
            started = time.monotonic()
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            try:

                def scored() -> bool:
                    if process.poll() is not None:
                        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                        raise SystemExit(f"monitor run exited with {process.returncode}:\n{tail}")
                    return counts(db_path)[1] >= args.articles

                wait_for(scored, timeout=args.timeout, interval=0.25, what=f"{args.articles} scored articles")
                after = memory_mb(process.pid)
                took = time.monotonic() - started
                articles, n_scored = counts(db_path)
                print(
                    f"{n_scored} of {articles} articles scored {took:.1f}s after start: {show(after)}",
                    flush=True,
                )
                time.sleep(args.settle)
                idle = memory_mb(process.pid)
                print(f"after {args.settle:g}s idle: {show(idle)}", flush=True)
                stop_started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=15)
                stop_seconds = time.monotonic() - stop_started
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        print(f"SIGTERM: exit code {code} after {stop_seconds:.1f}s", flush=True)
        if code != 0:
            print(log_path.read_text(encoding="utf-8", errors="replace")[-3000:], file=sys.stderr)

    ok = code == 0 and after["VmRSS"] <= FLOOR_MB
    result = {
        "articles": args.articles,
        "feeds": len(sizes),
        "model": args.model,
        "threads": args.threads,
        "articles_stored": articles,
        "articles_scored": n_scored,
        "seconds_to_scored": round(took, 1),
        "rss_after_scoring_mb": after["VmRSS"],
        "peak_rss_mb": after["VmHWM"],
        "rss_anon_after_scoring_mb": after["RssAnon"],
        "rss_file_after_scoring_mb": after["RssFile"],
        "settle_seconds": args.settle,
        "rss_idle_mb": idle["VmRSS"],
        "peak_rss_idle_mb": idle["VmHWM"],
        "exit_code": code,
        "stop_seconds": round(stop_seconds, 2),
        "floor_mb": FLOOR_MB,
        "floor_met": ok,
    }
    print(
        f"monitor run after scoring {n_scored} articles: RSS {after['VmRSS']:.0f} MB, "
        f"peak {after['VmHWM']:.0f} MB (floor: RSS <= {FLOOR_MB} MB and exit 0: {'met' if ok else 'NOT met'})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
