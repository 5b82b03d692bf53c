"""Test setup for the alert tests: store articles with topic scores directly (what the classifier would)."""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.store.db import session_scope
from monitor.store.history import ArticleTopics, TopicRow, replace_article_topics
from monitor.store.tables import Article, ArticleScore, Feed


def label_of(sentiment: float) -> str:
    return "negative" if sentiment <= -0.2 else "positive" if sentiment >= 0.2 else "neutral"


def add_article(
    engine: Engine,
    *,
    title: str,
    topic: str,
    sentiment: float,
    at: datetime,
    url: str | None = None,
    source: str | None = None,
    feed: str = "test-feed",
    label: str | None = None,
) -> int:
    """One article, its score and one topic row; returns the article id."""
    label = label or label_of(sentiment)
    with session_scope(engine) as session:
        feed_id = session.execute(sa.select(Feed.id).where(Feed.name == feed)).scalar()
        if feed_id is None:
            row = Feed(name=feed, url=f"http://127.0.0.1/{feed}.xml")
            session.add(row)
            session.flush()
            feed_id = row.id
        key = hashlib.sha256(f"{title}|{at.isoformat()}|{url}".encode()).hexdigest()
        article = Article(
            feed_id=feed_id,
            dedupe_key=key,
            url=url,
            title=title,
            summary="",
            source=source,
            content_hash=key,
            published_at=at,
            collected_at=at,
            happened_at=at,
        )
        session.add(article)
        session.flush()
        p_neg = max(-sentiment, 0.0)
        p_pos = max(sentiment, 0.0)
        session.add(
            ArticleScore(
                article_id=article.id,
                label=label,
                score=sentiment,
                confidence=0.9,
                p_negative=p_neg,
                p_neutral=1 - p_neg - p_pos,
                p_positive=p_pos,
                model_name="test",
                model_version="0",
                scored_at=at,
            )
        )
        # Through the classifier's own path, which keeps the history rollup in step.
        replace_article_topics(
            session, [ArticleTopics(article.id, at, [TopicRow(topic, 1.0, sentiment, label)])]
        )
        return article.id
