"""Story assignment speed with a large stored history: the cost must not grow with the articles stored.

    python bench/stories_speed.py [--stored 100000] [--new 3000] [--batch 100] [--db sqlite|postgresql|both]
                                  [--json FILE]

For each database: `--stored` articles over the last 60 days already placed in stories (headlines made up from
a vocabulary of AI-chip news words, a third of them syndicated copies, each with a 384-dimension meaning
vector as the model stores it), then `--new` arriving articles placed by the product's stage
(`StoryStage.assign`, batches of `--batch` as a feed poll gives them): reading the facts, catching up on other
processes' placements, matching (MinHash LSH and the vector table), writing placements, stories and per-topic
votes, all in the assignment transaction. A first assign loads the window into memory (timed apart: a process
pays it once at start). The new articles' meaning vectors (multilingual-e5-small, the stage's real embedder)
are computed before that clock starts and reported apart: they cost the same whatever is stored, like scoring.
Printed: articles assigned per second (floor: 500), embeddings per second, and, side by side in the same run,
the rate with a tenth of the history stored, so growth with history shows as a ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import drop_pg_database, make_pg_database  # noqa: E402

from monitor.config import StoriesConfig  # noqa: E402
from monitor.events import ArticleScored, TopicScore  # noqa: E402
from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.history import ArticleTopics, TopicRow, replace_article_topics  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402
from monitor.store.tables import Article, Feed, Story, StoryArticle  # noqa: E402
from monitor.stories import StoryStage  # noqa: E402
from monitor.stories._embed import MeaningEmbedder  # noqa: E402
from monitor.stories._text import meaning_text  # noqa: E402

FLOOR = 500
WORDS = [
    "nvidia",
    "google",
    "tpu",
    "meta",
    "amazon",
    "trainium",
    "broadcom",
    "asic",
    "tsmc",
    "intel",
    "amd",
    "hbm",
    "cowos",
    "samsung",
    "hynix",
    "micron",
    "shares",
    "slide",
    "surge",
    "rally",
    "plunge",
    "deal",
    "order",
    "capex",
    "guidance",
    "export",
    "china",
    "curbs",
    "blackwell",
    "rubin",
    "ironwood",
    "maia",
    "mtia",
    "openai",
    "anthropic",
    "microsoft",
    "oracle",
    "cloud",
    "data",
    "center",
    "revenue",
    "margin",
    "forecast",
    "analysts",
    "downgrade",
    "upgrade",
    "bubble",
    "valuation",
    "record",
    "quarter",
    "supply",
    "shortage",
    "yields",
    "packaging",
    "wafer",
    "foundry",
    "fab",
    "ohio",
    "arizona",
    "taiwan",
    "billion",
    "percent",
    "week",
    "month",
    "investors",
    "fears",
    "demand",
    "chips",
    "gpu",
    "accelerator",
    "contract",
    "lawsuit",
    "probe",
    "tariff",
]
TOPICS = ("nvidia", "tpu", "custom_chips", "ai_bubble")


def headline(rng: random.Random) -> str:
    words = rng.sample(WORDS, rng.randint(7, 12))
    return f"{' '.join(words).capitalize()} {rng.randint(1, 999)}"


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill(engine: sa.Engine, stored: int, now: datetime, seed: int = 1) -> None:
    """`stored` articles over 60 days, placed in stories (a third are copies of the one before)."""
    rng, vrng = random.Random(seed), np.random.default_rng(seed)
    with engine.begin() as connection:
        feed_id = connection.execute(
            sa.insert(Feed.__table__)
            .values(name="wire", url="http://127.0.0.1/w", consecutive_errors=0)
            .values(entries_seen=0)
            .returning(Feed.__table__.c.id)
        ).scalar_one()
    step = timedelta(days=60) / stored
    for start in range(0, stored, 5000):
        count = min(5000, stored - start)
        vectors = unit_vectors(vrng, count)
        articles, stories, members, topics = [], [], [], []
        title = ""
        for k in range(count):
            n = start + k
            at = now - timedelta(days=60) + n * step
            copy = n % 3 == 2
            title = f"{title} - Reuters" if copy else headline(rng)
            articles.append(
                {
                    "id": n + 1,
                    "feed_id": feed_id,
                    "dedupe_key": f"k{n}",
                    "url": f"https://news{n % 40}.test/{n}",
                    "title": title,
                    "summary": "",
                    "language": "en",
                    "content_hash": f"h{n}",
                    "published_at": at,
                    "collected_at": at,
                    "happened_at": at,
                    "revision": 1,
                }
            )
            story_id = n if copy else n + 1
            if not copy:
                stories.append(
                    {"id": story_id, "first_seen": at, "last_seen": at, "headline": title, "articles": 1}
                    | {"sources": 1, "languages": "en"}
                )
            members.append(
                {
                    "seq": n + 1,
                    "article_id": n + 1,
                    "story_id": story_id,
                    "novel": not copy,
                    "source": f"news{n % 40}.test",
                    "language": "en",
                    "happened_at": at,
                    "similarity": 1.0,
                    "basis": "text" if copy else "first",
                    "vector": vectors[k].astype(np.float16).tobytes(),
                }
            )
            topics.append(ArticleTopics(n + 1, at, [TopicRow(TOPICS[n % 4], 0.9, 0.1, "neutral")]))
        with engine.begin() as connection:
            connection.execute(sa.insert(Article.__table__), articles)
            connection.execute(sa.insert(Story.__table__), stories)
            connection.execute(sa.insert(StoryArticle.__table__), members)
            replace_article_topics(connection, topics)
    if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        with engine.connect() as connection:  # and fresh planner statistics, as autovacuum keeps them live
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        with engine.begin() as connection:
            for table, column in (("articles", "id"), ("stories", "id"), ("story_articles", "seq")):
                connection.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"(SELECT max({column}) FROM {table}))"
                    )
                )


def arrive(engine: sa.Engine, first_id: int, count: int, now: datetime, seed: int = 2) -> list[ArticleScored]:
    """Store `count` new articles (a third copies of earlier new ones) and return their scored events."""
    rng = random.Random(seed)
    rows, events, title = [], [], ""
    for k in range(count):
        at = now + timedelta(seconds=k)
        title = f"{title} | Yahoo Finance" if k % 3 == 2 else headline(rng)
        rows.append(
            {
                "id": first_id + k,
                "feed_id": 1,
                "dedupe_key": f"new{k}",
                "url": f"https://fresh{k % 30}.test/{k}",
                "title": title,
                "summary": "",
                "language": "en",
                "content_hash": f"n{k}",
                "published_at": at,
                "collected_at": at,
                "happened_at": at,
                "revision": 1,
            }
        )
        events.append(
            ArticleScored(
                first_id + k,
                "neutral",
                0.0,
                0.9,
                "bench@1",
                (TopicScore(TOPICS[k % 4], 0.9, 0.1),),
            )
        )
    with engine.begin() as connection:
        connection.execute(sa.insert(Article.__table__), rows)
        replace_article_topics(
            connection,
            [
                ArticleTopics(e.article_id, now, [TopicRow(e.topics[0].name, 0.9, 0.1, "neutral")])
                for e in events
            ],
        )
    return events, [r["title"] for r in rows]


class Precomputed:
    """The stage's embedder, the real vectors computed (and timed) before the clock for placing starts."""

    def __init__(self, titles: list[str]) -> None:
        texts = [meaning_text(t, "") for t in titles]
        started = time.monotonic()
        self.vectors = dict(zip(texts, MeaningEmbedder().embed(texts), strict=True))
        self.per_s = len(texts) / (time.monotonic() - started)

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def run(url: str, stored: int, new: int, batch: int) -> dict:
    engine = create_db_engine(url)
    upgrade(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    fill(engine, stored, now - timedelta(minutes=30))
    fill_seconds = time.monotonic() - started
    events, titles = arrive(engine, stored + 1, new + batch, now)
    embedder = Precomputed(titles)
    stage = StoryStage(StoriesConfig(), engine, embedder=embedder)  # type: ignore[arg-type]
    started = time.monotonic()
    stage.assign(events[:batch], now=now)  # loads the window into memory
    warm = time.monotonic() - started
    window_members = len(stage.index)
    started = time.monotonic()
    for start in range(batch, len(events), batch):
        stage.assign(events[start : start + batch], now=now)
    seconds = time.monotonic() - started
    with engine.connect() as connection:
        stories = connection.execute(sa.select(sa.func.count()).select_from(Story.__table__)).scalar_one()
    engine.dispose()
    return {
        "stored": stored,
        "fill_seconds": round(fill_seconds, 1),
        "window_load_seconds": round(warm, 2),
        "window_articles_in_memory": window_members,
        "assigned": new,
        "seconds": round(seconds, 2),
        "articles_per_s": round(new / seconds, 1),
        "embedded_per_s": round(embedder.per_s, 1),
        "stories_total": int(stories),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--db", default="both", choices=("sqlite", "postgresql", "both"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import tempfile

    results = {}
    for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        for stored in (args.stored // 10, args.stored):
            if db == "sqlite":
                tmp = tempfile.mkdtemp()
                url = f"sqlite:///{tmp}/bench.db"
            else:
                url = make_pg_database("bench_stories")
            try:
                result = run(url, stored, args.new, args.batch)
            finally:
                if db == "postgresql":
                    drop_pg_database(url)
            results[f"{db}/{stored}"] = result
            print(
                f"{db:10s} stored {stored:>7}: {result['articles_per_s']:>7.1f} articles/s assigned, "
                f"{result['embedded_per_s']:.0f}/s embedded ({result['window_articles_in_memory']} in the "
                f"window, loaded in {result['window_load_seconds']}s)",
                flush=True,
            )
        small, large = results[f"{db}/{args.stored // 10}"], results[f"{db}/{args.stored}"]
        ratio = large["articles_per_s"] / small["articles_per_s"]
        verdict = "meets" if large["articles_per_s"] >= FLOOR else "BELOW"
        print(
            f"{db}: rate at {args.stored} stored / at {args.stored // 10} = {ratio:.2f}; "
            f"{verdict} floor {FLOOR}/s"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
