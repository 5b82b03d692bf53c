"""Known data for query, API and dashboard tests: articles with scores and topics, stored for real.

Articles go in through the tables (the collector's job is not under test here); topics go in through
`monitor.store.history.replace_article_topics`, the same path the classifier uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.store.articles import ArticleInput, store_articles
from monitor.store.db import session_scope
from monitor.store.feeds import ensure_feeds
from monitor.store.history import ArticleTopics, TopicRow, replace_article_topics
from monitor.store.tables import Article, ArticleScore, Feed
from monitor.timeutil import utcnow


@dataclass
class SeedArticle:
    title: str
    at: datetime
    topics: dict[str, float]  # topic -> sentiment
    feed: str = "wire"
    language: str = "en"
    url: str | None = None
    summary: str = ""
    ids: list[int] = field(default_factory=list)


def label_of(sentiment: float) -> str:
    if sentiment <= -0.2:
        return "negative"
    if sentiment >= 0.2:
        return "positive"
    return "neutral"


def seed(engine: Engine, articles: list[SeedArticle]) -> list[int]:
    """Store the articles (feeds created as needed) and return their ids in order."""
    ids: list[int] = []
    with engine.begin() as connection:
        feed_ids: dict[str, int] = {
            name: fid
            for fid, name in connection.execute(sa.select(Feed.__table__.c.id, Feed.__table__.c.name))
        }
        items = []
        for index, article in enumerate(articles):
            if article.feed not in feed_ids:
                result = connection.execute(
                    sa.insert(Feed.__table__).values(
                        name=article.feed,
                        url=f"http://127.0.0.1/{article.feed}.xml",
                        consecutive_errors=0,
                        entries_seen=0,
                    )
                )
                feed_ids[article.feed] = result.inserted_primary_key[0]
            key = hashlib.sha256(f"{article.title}|{article.at.isoformat()}|{index}".encode()).hexdigest()
            result = connection.execute(
                sa.insert(Article.__table__).values(
                    feed_id=feed_ids[article.feed],
                    dedupe_key=key,
                    url=article.url or f"https://example.com/{key[:12]}",
                    title=article.title,
                    summary=article.summary,
                    language=article.language,
                    content_hash=key,
                    published_at=article.at,
                    collected_at=article.at,
                    happened_at=article.at,
                    revision=1,
                )
            )
            article_id = result.inserted_primary_key[0]
            ids.append(article_id)
            overall = sum(article.topics.values()) / len(article.topics) if article.topics else 0.0
            connection.execute(
                sa.insert(ArticleScore.__table__).values(
                    article_id=article_id,
                    label=label_of(overall),
                    score=overall,
                    confidence=0.9,
                    p_negative=max(0.0, -overall),
                    p_neutral=1 - abs(overall),
                    p_positive=max(0.0, overall),
                    model_name="seed",
                    model_version="1",
                    scored_at=article.at,
                )
            )
            items.append(
                ArticleTopics(
                    article_id=article_id,
                    happened_at=article.at,
                    topics=[TopicRow(t, 0.9, s, label_of(s)) for t, s in article.topics.items()],
                )
            )
        replace_article_topics(connection, items)
    return ids


def seed_unscored(
    engine: Engine, count: int, *, feed: str = "wire", now: datetime | None = None
) -> list[int]:
    """Store `count` Nvidia headlines the way the collector does and score none of them: what a pass killed
    (`kill -9`) between storing and scoring leaves behind. For the recovery test and bench/recovery.py."""
    from headlines import negative_run  # tests/ is on sys.path in pytest and in bench scripts

    now = now or utcnow()
    state = ensure_feeds(engine, [(feed, f"http://127.0.0.1/{feed}.xml")], now)[feed]
    inputs = []
    for index, title in enumerate(negative_run(count)):
        key = hashlib.sha256(f"{feed}|{index}".encode()).hexdigest()
        inputs.append(
            ArticleInput(
                dedupe_key=key,
                title=title,
                summary="",
                content_hash=key,
                url=f"https://news.test/{feed}/{index}",
                language="en",
                published_at=now - timedelta(seconds=index),
            )
        )
    with session_scope(engine) as session:
        outcome = store_articles(session, feed_id=state.id, items=inputs, now=now)
    return [article_id for article_id, _ in outcome.new]
