"""Query latency at scale: 1,000,000 synthetic articles (4 topics, 30 days) on SQLite and PostgreSQL.

    python bench/query.py                        # both databases, 1,000,000 articles
    python bench/query.py --articles 100000 --db sqlite --repeat 30

For each database it loads the articles (with scores and topic rows), builds the history rollup the
way a bulk load must (`refresh_rollup`), then prints p50/p95 over `--repeat` runs of:

- history:  `monitor history` for one topic, 30 days, hourly buckets (the floor: p95 < 200 ms)
- history4: the same for all four topics
- articles: the `/api/articles` query for one topic over 24 hours, newest first, 50 rows
- articles-neg: the same, most negative first over 7 days (the dashboard's headline list)
- articles-search: a literal text search over 7 days
- http /api/sentiment: 30-day hourly history for one topic through uvicorn over HTTP

The SQLite file goes to a temporary folder (or --sqlite-path); the PostgreSQL database is created on
the server of --pg-url and dropped afterwards (unless --keep).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import Settings  # noqa: E402
from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.history import history, refresh_rollup  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402

TOPICS = ["nvidia", "tpu", "custom_chips", "ai_bubble"]
TOPIC_WEIGHTS = [0.45, 0.2, 0.2, 0.15]
FEEDS = [f"bench-feed-{i:02d}" for i in range(20)]
WORDS = [
    "nvidia",
    "shares",
    "chips",
    "google",
    "tpu",
    "custom",
    "asic",
    "broadcom",
    "marvell",
    "trainium",
    "bubble",
    "valuation",
    "demand",
    "supply",
    "export",
    "china",
    "data",
    "center",
    "blackwell",
    "rubin",
    "earnings",
    "guidance",
    "analysts",
    "investors",
    "market",
    "cloud",
    "meta",
    "amazon",
]
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def synthetic_rows(count: int, end: datetime, days: int, seed: int = 42) -> Iterator[tuple]:
    """(id, feed_id, when, title, lang, score, label, [(topic, sentiment, label)]) with a daily rhythm."""
    rnd = random.Random(seed)
    span = days * 86400
    for article_id in range(1, count + 1):
        when = end - timedelta(seconds=rnd.random() * span)
        title = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 12)))
        score = max(-1.0, min(1.0, rnd.gauss(0.05, 0.45)))
        label = "negative" if score <= -0.2 else "positive" if score >= 0.2 else "neutral"
        n_topics = 1 if rnd.random() < 0.75 else 2
        topics = []
        for topic in set(rnd.choices(TOPICS, TOPIC_WEIGHTS, k=n_topics)):
            s = max(-1.0, min(1.0, score + rnd.gauss(0, 0.15)))
            topics.append((topic, s, "negative" if s <= -0.2 else "positive" if s >= 0.2 else "neutral"))
        lang = "zh" if rnd.random() < 0.25 else "en"
        yield article_id, rnd.randint(1, len(FEEDS)), when, title, lang, score, label, topics


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def load(engine: sa.engine.Engine, count: int, end: datetime, days: int) -> int:
    """Bulk-load the synthetic data with the driver's fastest path; returns the topic rows written."""
    topic_rows = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        now = _ts(end)
        feeds = [(i + 1, name, f"http://127.0.0.1/{name}.xml", 0, 0, now) for i, name in enumerate(FEEDS)]
        if engine.dialect.name == "sqlite":
            cursor.executemany(
                "INSERT INTO feeds (id, name, url, consecutive_errors, entries_seen, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                feeds,
            )
        else:
            cursor.executemany(
                "INSERT INTO feeds (id, name, url, consecutive_errors, entries_seen, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                feeds,
            )
        batch_a, batch_s, batch_t = [], [], []

        def flush() -> None:
            if engine.dialect.name == "sqlite":
                cursor.executemany(
                    "INSERT INTO articles (id, feed_id, dedupe_key, url, title, summary, language, "
                    "content_hash, published_at, collected_at, happened_at, revision) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,1)",
                    batch_a,
                )
                cursor.executemany(
                    "INSERT INTO article_scores (article_id, label, score, confidence, p_negative, "
                    "p_neutral, p_positive, model_name, model_version, scored_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    batch_s,
                )
                cursor.executemany(
                    "INSERT INTO article_topics (article_id, topic, relevance, sentiment, label, "
                    "happened_at) VALUES (?,?,?,?,?,?)",
                    batch_t,
                )
            else:
                for table, columns, rows in (
                    (
                        "articles",
                        "id, feed_id, dedupe_key, url, title, summary, language, content_hash, "
                        "published_at, collected_at, happened_at, revision",
                        [r + (1,) for r in batch_a],
                    ),
                    (
                        "article_scores",
                        "article_id, label, score, confidence, p_negative, p_neutral, p_positive, "
                        "model_name, model_version, scored_at",
                        batch_s,
                    ),
                    (
                        "article_topics",
                        "article_id, topic, relevance, sentiment, label, happened_at",
                        batch_t,
                    ),
                ):
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            batch_a.clear()
            batch_s.clear()
            batch_t.clear()

        for article_id, feed_id, when, title, lang, score, label, topics in synthetic_rows(count, end, days):
            stamp = _ts(when)
            key = uuid.UUID(int=article_id).hex
            batch_a.append(
                (
                    article_id,
                    feed_id,
                    key + key,
                    f"https://example.com/a/{article_id}",
                    title,
                    "",
                    lang,
                    key,
                    stamp,
                    stamp,
                    stamp,
                )
            )
            p_neg, p_pos = max(0.0, -score), max(0.0, score)
            batch_s.append(
                (article_id, label, score, 0.8, p_neg, 1 - p_neg - p_pos, p_pos, "bench", "1", stamp)
            )
            for topic, sentiment, topic_label in topics:
                batch_t.append((article_id, topic, 0.8, sentiment, topic_label, stamp))
                topic_rows += 1
            if len(batch_a) >= 50_000:
                flush()
        flush()
        if engine.dialect.name == "postgresql":
            cursor.execute("SELECT setval('articles_id_seq', (SELECT max(id) FROM articles))")
            cursor.execute("SELECT setval('feeds_id_seq', (SELECT max(id) FROM feeds))")
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as connection:
        refresh_rollup(connection)  # the bulk path: one recomputation instead of per-article upserts
    # Steady state before measuring: statistics fresh and (PostgreSQL) the visibility map set, so
    # autovacuum does not start on the freshly loaded tables in the middle of the measurements.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    return topic_rows


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    func()  # warm-up (first-query plan and page cache)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, max(0, round(0.95 * len(samples)) - 1))]
    return statistics.median(samples), p95, samples[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(settings: Settings, engine: sa.engine.Engine) -> tuple[str, Callable[[], None]]:
    import uvicorn

    from monitor.api import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def articles_query() -> Callable:
    from monitor.store.articles import ArticleFilter, list_articles

    def query(engine: sa.engine.Engine, **filters: object) -> list:
        return list_articles(engine, ArticleFilter(**filters))

    return query


def bench(name: str, url: str, args: argparse.Namespace) -> list[tuple[str, str, float, float, float]]:
    import httpx

    engine = create_db_engine(url)
    upgrade(engine)
    end = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    topic_rows = load(engine, args.articles, end, args.days)
    print(
        f"[{name}] loaded {args.articles:,} articles, {topic_rows:,} topic rows in "
        f"{time.perf_counter() - started:.0f}s",
        flush=True,
    )
    since = end - timedelta(days=args.days)
    results = []

    def add(label: str, func: Callable[[], object]) -> None:
        p50, p95, worst = timed(func, args.repeat)
        results.append((name, label, p50, p95, worst))
        print(f"[{name}] {label:<32} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   max {worst:8.1f} ms", flush=True)

    # Unaligned edges, as a "--since 30d" from the CLI has.
    add(
        "history 1 topic 30d/1h", lambda: history(engine, ["nvidia"], since + timedelta(seconds=7), end, "1h")
    )
    add("history 4 topics 30d/1h", lambda: history(engine, TOPICS, since + timedelta(seconds=7), end, "1h"))
    add(
        "history 1 topic 30d/1d Berlin",
        lambda: history(engine, ["nvidia"], since, end, "1d", "Europe/Berlin"),
    )
    query = articles_query()
    add(
        "articles topic 24h newest 50",
        lambda: query(engine, topics=("nvidia",), since=end - timedelta(hours=24), until=end, limit=50),
    )
    add(
        "articles topic 7d most_negative 5",
        lambda: query(
            engine,
            topics=("nvidia",),
            since=end - timedelta(days=7),
            until=end,
            sort="most_negative",
            limit=5,
        ),
    )
    add(
        "articles all 24h newest 50",
        lambda: query(engine, since=end - timedelta(hours=24), until=end, limit=50),
    )
    add(
        "articles search 7d",
        lambda: query(engine, search="blackwell rubin", since=end - timedelta(days=7), until=end, limit=50),
    )
    settings = Settings.model_validate(
        {"database_url": url, "topics": {t: {"keywords": [t]} for t in TOPICS}}
    )
    base, stop = serve(settings, engine)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:

            def call() -> None:
                response = client.get(
                    "/api/sentiment", params={"topic": "nvidia", "since": "30d", "bucket": "1h"}
                )
                response.raise_for_status()
                assert len(response.json()["points"]) >= 720

            add("http /api/sentiment 30d/1h", call)

            def call_articles() -> None:
                client.get(
                    "/api/articles", params={"topic": "nvidia", "since": "24h", "limit": 50}
                ).raise_for_status()

            add("http /api/articles 24h 50", call_articles)
    finally:
        stop()
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sqlite-path", type=Path, default=None)
    parser.add_argument("--pg-url", default=PG_DEFAULT, help="server URL used to create the bench database")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database and SQLite file")
    args = parser.parse_args()

    results = []
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="monitor-bench-") as folder:
            path = args.sqlite_path or Path(folder) / "bench.db"
            path.unlink(missing_ok=True)
            results += bench("sqlite", f"sqlite:///{path}", args)
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
    if args.db in ("postgresql", "both"):
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        name = f"monitor_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
        try:
            results += bench("postgresql", url, args)
        finally:
            if not args.keep:
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    print(f"\n{args.articles:,} articles, {args.days} days, {len(TOPICS)} topics; {args.repeat} runs each")
    print(f"{'database':<11} {'query':<34} {'p50 ms':>8} {'p95 ms':>8}")
    for db, label, p50, p95, _ in results:
        print(f"{db:<11} {label:<34} {p50:8.1f} {p95:8.1f}")
    floor = [r for r in results if r[1] == "history 1 topic 30d/1h"]
    failed = [r for r in floor if r[3] >= 200]
    print("floor (30-day hourly history, one topic, p95 < 200 ms):", "FAIL" if failed else "ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
