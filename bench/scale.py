"""End-to-end entries/s (fetch -> stored -> scored) in one process against 1 and 2 `monitor worker` processes.

Each mode gets a fresh PostgreSQL database and the same locally served feeds (FEEDS x ENTRIES unique entries):

- single:    one `monitor run` without a broker (the embedded default, on PostgreSQL);
- workers=N: `monitor run` with MONITOR_BROKER_URL (claims and enqueues) and N `monitor worker` processes
             (4 threads each), started and ready (model loaded) before `monitor run`.

The clock starts at the first feed request the local server sees and stops when every entry has a score,
so model loading is not counted in any mode. Prints one line per mode, and JSON with --json.

    python bench/scale.py                              # 200 feeds x 10 entries, modes single, 1 and 2 workers
    python bench/scale.py --feeds 2000 --entries 20    # the issue's size (long on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402
from tests.conftest import drop_pg_database, make_pg_database  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402
from tests.procs import MonitorProcess, free_port, write_config  # noqa: E402

BROKER = os.environ.get("MONITOR_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


def feed_xml(feed: int, entries: int) -> bytes:
    items = "".join(
        f"<item><title>Nvidia supplier {feed}-{i} ships {i + feed * 7} racks as TPU rivalry grows</title>"
        f"<link>https://news.example.com/{feed}/{i}</link><guid>{feed}-{i}</guid>"
        f"<pubDate>Tue, 25 Nov 2025 10:{i % 60:02d}:00 GMT</pubDate>"
        f"<description>Analysts discuss item {feed}-{i} and what it means for AI chips.</description></item>"
        for i in range(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>wire</title>'
        f"<link>https://news.example.com/</link><description>wire</description>{items}</channel></rss>"
    ).encode()


def run_mode(workers: int, feeds: int, entries: int, tmp: Path, timeout: float) -> dict:
    from monitor.queue import TaskQueue

    url = make_pg_database("monitor_bench_scale")
    engine = create_db_engine(url)
    upgrade(engine)
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    expected = feeds * entries
    procs: list[MonitorProcess] = []
    mode = "single" if workers == 0 else f"workers={workers}"
    try:
        with FeedServer() as server:
            feed_list = []
            for i in range(feeds):
                server.route(f"/f{i}.xml", body=feed_xml(i, entries), content_type="application/rss+xml")
                feed_list.append({"name": f"f{i}", "url": server.url(f"/f{i}.xml"), "every": "1h"})
            config = {"feeds": feed_list, "stories": {"enabled": False}}
            env = {}
            if workers:
                config["queue"] = {"broker_url": BROKER, "prefix": prefix}
                env["MONITOR_BROKER_URL"] = BROKER
            for n in range(workers):
                path = write_config(tmp / f"{mode}-w{n}.yaml", url, **config)
                procs.append(
                    MonitorProcess(["worker", "--threads", "4"], path, tmp / f"{mode}-w{n}.log", env=env)
                )
            deadline = time.monotonic() + 120
            while workers and not all("worker consuming" in p.output() for p in procs):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start")
                time.sleep(0.2)
            path = write_config(tmp / f"{mode}-run.yaml", url, **config, http={"port": free_port()})
            procs.append(MonitorProcess(["run"], path, tmp / f"{mode}-run.log", env=env))
            deadline = time.monotonic() + timeout
            while not server.hits and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.monotonic()
            scored = 0
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    scored = connection.execute(sa.text("SELECT count(*) FROM article_scores")).scalar()
                if scored >= expected:
                    break
                time.sleep(0.1)
            seconds = time.monotonic() - started
            with engine.connect() as connection:
                stored = connection.execute(sa.text("SELECT count(*) FROM articles")).scalar()
            polls = sum(server.hits.values())
        for proc in reversed(procs):
            proc.terminate(timeout=15)
    finally:
        for proc in procs:
            proc.close()
        engine.dispose()
        drop_pg_database(url)
        if workers:
            tasks = TaskQueue(BROKER, prefix=prefix)
            tasks.delete()
            tasks.close()
    return {
        "mode": mode,
        "entries": expected,
        "stored": stored,
        "scored": scored,
        "polls": polls,
        "seconds": round(seconds, 2),
        "entries_per_s": round(scored / seconds, 1) if seconds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=10)
    parser.add_argument("--modes", default="0,1,2", help="worker counts; 0 = single process (no broker)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(part) for part in args.modes.split(",")):
            result = run_mode(workers, args.feeds, args.entries, Path(tmp), args.timeout)
            print(
                f"{result['mode']:10s} {result['scored']}/{result['entries']} scored "
                f"in {result['seconds']:.1f}s: {result['entries_per_s']} entries/s ({result['polls']} polls)",
                flush=True,
            )
            results.append(result)
    if args.json:
        args.json.write_text(
            json.dumps({"feeds": args.feeds, "entries": args.entries, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
