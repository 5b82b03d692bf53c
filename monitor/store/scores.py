"""Article scores: the classifier's writes (score + topics, one transaction) and the reads `rescore` needs.

`article_topics` rows go through `monitor.store.history.replace_article_topics`, which keeps the
per-topic rollup exact; nothing here writes that table directly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.store.db import session_scope
from monitor.store.history import ArticleTopics, TopicRow, replace_article_topics
from monitor.store.tables import Article, ArticleScore
from monitor.timeutil import utcnow

log = logging.getLogger(__name__)

_SCORES = ArticleScore.__table__
_ARTICLES = Article.__table__


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One article's score and topics, as the classifier produced them."""

    article_id: int
    label: str
    score: float
    confidence: float
    p_negative: float
    p_neutral: float
    p_positive: float
    model_name: str
    model_version: str
    topics: tuple[TopicRow, ...] = ()

    @classmethod
    def from_scored(cls, article_id: int, scored: Any) -> ScoreRow:
        """From a `monitor.classify.ScoredText`."""
        negative, neutral, positive = scored.probabilities
        return cls(
            article_id=article_id,
            label=scored.label,
            score=scored.score,
            confidence=scored.confidence,
            p_negative=negative,
            p_neutral=neutral,
            p_positive=positive,
            model_name=scored.model_name[:200],
            model_version=scored.model_version[:100],
            topics=tuple(TopicRow(t.name, t.relevance, t.sentiment, t.label) for t in scored.topics),
        )


@dataclass(frozen=True, slots=True)
class ArticleText:
    """What the classifier needs to (re)score a stored article."""

    article_id: int
    title: str
    summary: str
    language: str | None
    published_at: datetime | None


def happened_at(session: Session, article_ids: Sequence[int]) -> dict[int, datetime]:
    """`articles.happened_at` for the ids that exist (topic rows carry a copy for window queries)."""
    out: dict[int, datetime] = {}
    ids = sorted(set(article_ids))
    for start in range(0, len(ids), 500):
        rows = session.execute(
            sa.select(Article.id, Article.happened_at).where(Article.id.in_(ids[start : start + 500]))
        ).all()
        out.update({row[0]: row[1] for row in rows})
    return out


def save_scores(session: Session, rows: Sequence[ScoreRow], scored_at: datetime | None = None) -> set[int]:
    """Upsert scores and replace topic rows for the given articles; returns the ids stored.

    Rows for articles that no longer exist (deleted by retention meanwhile) are skipped.
    """
    if not rows:
        return set()
    scored_at = scored_at or utcnow()
    when = happened_at(session, [row.article_id for row in rows])
    latest: dict[int, ScoreRow] = {row.article_id: row for row in rows}  # the last row per article wins
    missing = sorted(set(latest) - set(when))
    if missing:
        log.warning("articles vanished before their scores were stored", extra={"article_ids": missing[:20]})
    keep = [row for article_id, row in sorted(latest.items()) if article_id in when]
    if not keep:
        return set()
    connection = session.connection()
    connection.execute(sa.delete(_SCORES).where(_SCORES.c.article_id.in_([row.article_id for row in keep])))
    connection.execute(
        sa.insert(_SCORES),
        [
            {
                "article_id": row.article_id,
                "label": row.label,
                "score": float(row.score),
                "confidence": float(row.confidence),
                "p_negative": float(row.p_negative),
                "p_neutral": float(row.p_neutral),
                "p_positive": float(row.p_positive),
                "model_name": row.model_name,
                "model_version": row.model_version,
                "scored_at": scored_at,
            }
            for row in keep
        ],
    )
    replace_article_topics(
        session, [ArticleTopics(row.article_id, when[row.article_id], row.topics) for row in keep]
    )
    session.flush()
    return {row.article_id for row in keep}


def save_scores_to(target: Engine | Session, rows: Sequence[ScoreRow]) -> set[int]:
    """`save_scores` in its own transaction (Engine) or in the caller's (Session: flushed, not committed)."""
    if isinstance(target, Session):
        return save_scores(target, rows)
    with session_scope(target) as session:
        return save_scores(session, rows)


def articles_to_rescore(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    only_missing: bool = False,
    collected_before: datetime | None = None,
    after_id: int = 0,
    limit: int = 256,
) -> list[ArticleText]:
    """A page of stored articles (by id, after `after_id`) whose time is in [since, until)."""
    query = sa.select(
        _ARTICLES.c.id, _ARTICLES.c.title, _ARTICLES.c.summary, _ARTICLES.c.language, _ARTICLES.c.published_at
    ).where(_ARTICLES.c.id > after_id)
    if since is not None:
        query = query.where(Article.happened_at >= since)
    if until is not None:
        query = query.where(Article.happened_at < until)
    if only_missing:
        query = query.where(~sa.exists().where(_SCORES.c.article_id == _ARTICLES.c.id))
    if collected_before is not None:  # leave articles a running pass is still scoring alone
        query = query.where(Article.collected_at < collected_before)
    query = query.order_by(_ARTICLES.c.id).limit(limit)
    with Session(engine) as session:
        rows = session.execute(query).all()
    return [ArticleText(row[0], row[1] or "", row[2] or "", row[3], row[4]) for row in rows]


def get_score(session: Session, article_id: int) -> ArticleScore | None:
    return session.get(ArticleScore, article_id)


def score_counts_by_model(engine: Engine) -> dict[tuple[str, str], int]:
    """How many stored scores each (model, version) produced: shows what a rescore would change."""
    with Session(engine) as session:
        rows = session.execute(
            sa.select(ArticleScore.model_name, ArticleScore.model_version, sa.func.count()).group_by(
                ArticleScore.model_name, ArticleScore.model_version
            )
        ).all()
    return {(row[0], row[1]): int(row[2]) for row in rows}
