"""Collection throughput: N feeds x M entries over local HTTP: fetch + parse + normalise + dedupe + store.

    python bench/collect.py                       # 100 x 100 on SQLite and PostgreSQL (when reachable)
    python bench/collect.py --db sqlite --feeds 50 --entries 200
    python bench/collect.py --json                # machine-readable result

Pass 1 stores every entry into a fresh database (entries/s); pass 2 repeats the collection, every feed
answers 304 Not Modified (seconds). Scoring is not included (see the classifier's own benchmark).
Floors from the collection issue: >= 1,000 entries/s on pass 1, < 2 s for pass 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from feedserver import FeedServer  # noqa: E402

from monitor.collect import Collector  # noqa: E402
from monitor.config import Settings  # noqa: E402
from monitor.store.articles import article_count  # noqa: E402
from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
FLOOR_ENTRIES_PER_S = 1000
FLOOR_SECOND_PASS_S = 2.0

SUBJECTS = ["Nvidia", "Google's TPU team", "AMD", "Broadcom", "Marvell", "Amazon's Trainium group", "Meta",
            "Microsoft's Maia unit", "TSMC", "SK Hynix", "Analysts", "Investors"]  # fmt: skip
VERBS = ["unveils", "warns about", "doubles down on", "cuts forecasts for", "bets on", "questions", "ships",
         "delays", "expands", "raises prices of"]  # fmt: skip
OBJECTS = ["next-generation accelerators", "AI data-centre spending", "custom ASIC orders", "HBM supply",
           "the AI bubble debate", "inference chips", "CoWoS packaging capacity",
           "cloud TPU capacity"]  # fmt: skip
ZH = [
    "英伟达股价下跌，市场担忧人工智能泡沫",
    "谷歌张量处理器订单激增",
    "博通定制芯片业务增长强劲",
    "台积电扩充先进封装产能",
]


def make_feed(index: int, entries: int, rng: random.Random, start: datetime) -> bytes:
    items = []
    for j in range(entries):
        when = start - timedelta(minutes=7 * j + index)
        if j % 10 == 9:
            title, text = (
                ZH[(index + j) % len(ZH)] + f"（{index}-{j}）",
                "据报道，相关公司正在洽谈新的芯片订单。",
            )
        else:
            title = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ({index}-{j})"
            text = (
                f"<p>{rng.choice(SUBJECTS)} said on the call that {rng.choice(OBJECTS)} will matter for the "
                f"year ahead, while <b>{rng.choice(SUBJECTS)}</b> {rng.choice(VERBS)} "
                f"{rng.choice(OBJECTS)}.</p><p>Shares moved {rng.uniform(-5, 5):.1f}% &amp; volume rose.</p>"
            )
        link = (
            f"https://news{index % 7}.example.com/{when:%Y/%m/%d}/story-{index}-{j}?utm_source=rss&amp;id={j}"
        )
        items.append(
            f"<item><title>{title}</title><link>{link}</link>"
            f'<guid isPermaLink="false">bench-{index}-{j}</guid>'
            f"<pubDate>{format_datetime(when)}</pubDate><description><![CDATA[{text}]]></description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Bench feed {index}</title><link>https://bench{index}.example.com/</link>"
        f"<description>benchmark</description>{''.join(items)}</channel></rss>"
    ).encode()


def run_once(db: str, url: str, server: FeedServer, n_feeds: int) -> dict:
    engine = create_db_engine(url)
    upgrade(engine)
    settings = Settings.model_validate({
        "database_url": url,
        "feeds": [{"name": f"bench{i}", "url": server.url(f"/bench/{i}.xml")} for i in range(n_feeds)],
    })  # fmt: skip
    collector = Collector(settings, engine)
    try:
        started = time.perf_counter()
        first = collector.collect_many(settings.feeds)
        pass1 = time.perf_counter() - started
        stored = sum(r.new for r in first)
        failed = [f"{r.feed}: {r.error}" for r in first if r.status != "ok"]
        started = time.perf_counter()
        second = collector.collect_many(settings.feeds)
        pass2 = time.perf_counter() - started
        not_modified = sum(1 for r in second if r.status == "not_modified")
        rows = article_count(engine)
    finally:
        collector.close()
        engine.dispose()
    return {
        "database": db, "feeds": n_feeds, "stored": stored, "rows": rows, "failed": failed,
        "pass1_seconds": round(pass1, 3), "entries_per_second": round(stored / pass1, 1),
        "pass2_seconds": round(pass2, 3), "pass2_not_modified": not_modified,
    }  # fmt: skip


def pg_database() -> str | None:
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"monitor_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL not available ({str(exc).splitlines()[0]}); skipping it", file=sys.stderr)
        return None
    finally:
        admin.dispose()
    return sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def drop_pg(url: str) -> None:
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')
        )
    admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("monitor").setLevel(logging.ERROR)

    rng = random.Random(42)
    start = datetime(2025, 11, 25, 12, 0, tzinfo=UTC)
    results = []
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp, FeedServer(root=Path(tmp)) as server:
        total_bytes = 0
        for i in range(args.feeds):
            body = make_feed(i, args.entries, rng, start)
            total_bytes += len(body)
            server.route(f"/bench/{i}.xml", body=body, content_type="application/rss+xml; charset=utf-8")
        for db in [d.strip() for d in args.db.split(",") if d.strip()]:
            if db == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
                results.append(run_once(db, url, server, args.feeds))
            elif db == "postgresql":
                url = pg_database()
                if url is None:
                    continue
                try:
                    results.append(run_once(db, url, server, args.feeds))
                finally:
                    drop_pg(url)
            else:
                parser.error(f"unknown database {db!r}")
    ok = True
    for result in results:
        expected = args.feeds * args.entries
        result["floors_met"] = (
            result["stored"] == expected and result["rows"] == expected and not result["failed"]
            and result["entries_per_second"] >= FLOOR_ENTRIES_PER_S
            and result["pass2_seconds"] < FLOOR_SECOND_PASS_S and result["pass2_not_modified"] == args.feeds
        )  # fmt: skip
        ok = ok and result["floors_met"]
    if args.json:
        summary = {"feeds": args.feeds, "entries": args.entries, "bytes": total_bytes, "results": results}
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.feeds} feeds x {args.entries} entries ({total_bytes / 1e6:.1f} MB of RSS) over local HTTP"
        )
        for r in results:
            print(f"  {r['database']:<10} pass 1: {r['stored']:>6} entries in {r['pass1_seconds']:6.2f} s = "
                  f"{r['entries_per_second']:7.0f} entries/s   pass 2 (304s): {r['pass2_seconds']:.2f} s   "
                  f"{'OK' if r['floors_met'] else 'BELOW FLOOR'}")  # fmt: skip
            for failure in r["failed"][:5]:
                print(f"    failed: {failure}")
        print(f"  floors: >= {FLOOR_ENTRIES_PER_S} entries/s, pass 2 < {FLOOR_SECOND_PASS_S:g} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
