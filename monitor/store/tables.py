"""The database tables. All of them live here so migrations see one metadata.

Each stage reads and writes them only through the repository module of its concern
(`monitor.store.feeds`, `.articles`, `.scores`, `.alerts`, `.outbox`, ...), never directly.
Datetimes are stored as naive UTC and come back timezone-aware (see `UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from monitor.timeutil import as_utc


class UTCDateTime(TypeDecorator):
    """Aware UTC in Python, naive UTC in the database (identical on SQLite and PostgreSQL)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001
        if value is None:
            return None
        return as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value, dialect):  # noqa: ANN001
        if value is None:
            return None
        return as_utc(value)


def _ts(nullable: bool = True, index: bool = False) -> sa.Column:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class Feed(SQLModel, table=True):
    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True}, nullable=False)
    url: str = Field(max_length=2000)  # as configured
    current_url: str | None = Field(default=None, max_length=2000)  # after a permanent redirect
    etag: str | None = Field(default=None, max_length=500)
    last_modified: str | None = Field(default=None, max_length=200)
    last_polled_at: datetime | None = Field(default=None, sa_column=_ts())
    last_success_at: datetime | None = Field(default=None, sa_column=_ts())
    last_status: str | None = Field(default=None, max_length=40)  # ok | not_modified | malformed | error
    last_http_status: int | None = None
    last_error: str | None = Field(default=None, max_length=2000)
    consecutive_errors: int = 0
    next_poll_at: datetime | None = Field(default=None, sa_column=_ts())
    entries_seen: int = 0
    created_at: datetime | None = Field(default=None, sa_column=_ts())


class Article(SQLModel, table=True):
    __tablename__ = "articles"
    __table_args__ = (
        sa.Index("ix_articles_happened_at", "happened_at"),
        sa.Index("ix_articles_feed_happened", "feed_id", "happened_at"),
        # A feed's newest article by collection time: feed health's "nothing new since" (0003).
        sa.Index("ix_articles_feed_collected", "feed_id", "collected_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feeds.id", nullable=False)
    dedupe_key: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    url: str | None = Field(default=None, max_length=2000)  # canonical URL
    guid: str | None = Field(default=None, max_length=1000)
    title: str = Field(default="", max_length=1000)
    summary: str = Field(default="", sa_type=sa.Text)
    author: str | None = Field(default=None, max_length=500)
    source: str | None = Field(default=None, max_length=300)  # publisher, when the feed names one
    language: str | None = Field(default=None, max_length=16)
    content_hash: str = Field(max_length=64)  # of title+summary: detects edits
    published_at: datetime | None = Field(default=None, sa_column=_ts())
    collected_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=_ts())
    # published_at, or collected_at when the entry carries no date: the time window queries use.
    happened_at: datetime = Field(sa_column=_ts(nullable=False))
    revision: int = 1


class ArticleScore(SQLModel, table=True):
    """The latest score of an article, with the model that produced it (provenance)."""

    __tablename__ = "article_scores"

    article_id: int = Field(foreign_key="articles.id", primary_key=True, ondelete="CASCADE")
    label: str = Field(max_length=16)
    score: float  # P(positive) - P(negative), in [-1, 1]
    confidence: float
    p_negative: float
    p_neutral: float
    p_positive: float
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=100)
    scored_at: datetime = Field(sa_column=_ts(nullable=False))


class ArticleTopic(SQLModel, table=True):
    """One row per (article, topic): what window queries and rules read."""

    __tablename__ = "article_topics"
    __table_args__ = (
        sa.Index("ix_article_topics_topic_happened", "topic", "happened_at"),
        # Most negative / most positive headlines of a topic (dashboard, /api/articles?sort=...).
        sa.Index("ix_article_topics_topic_sentiment", "topic", "sentiment"),
    )

    article_id: int = Field(foreign_key="articles.id", primary_key=True, ondelete="CASCADE")
    topic: str = Field(max_length=64, primary_key=True)
    relevance: float
    sentiment: float  # topic-specific score in [-1, 1]
    label: str = Field(max_length=16)
    happened_at: datetime = Field(sa_column=_ts(nullable=False))  # copy of articles.happened_at


class TopicRollup(SQLModel, table=True):
    """Per-topic 15-minute totals of `article_topics`, so history over months reads thousands of rows.

    Maintained only through `monitor.store.history` (replace_article_topics / forget_articles /
    refresh_rollup) in the same transaction as the `article_topics` change it mirrors.
    """

    __tablename__ = "topic_rollup"

    topic: str = Field(max_length=64, primary_key=True)
    # The cell's start: UTC, aligned to 15 minutes.
    bucket_start: datetime = Field(sa_column=sa.Column(UTCDateTime(), primary_key=True))
    articles: int = 0
    sentiment_sum: float = 0.0
    negative: int = 0
    positive: int = 0


class Story(SQLModel, table=True):
    """One event, however many copies of it arrive: syndicated, edited, or written up in another language.

    Written only through `monitor.store.stories`; `articles`, `sources` and `languages` are kept in step
    with `story_articles` there.
    """

    __tablename__ = "stories"
    __table_args__ = (sa.Index("ix_stories_first_seen", "first_seen"),)

    id: int | None = Field(default=None, primary_key=True)
    first_seen: datetime = Field(sa_column=_ts(nullable=False))  # happened_at of its first article
    last_seen: datetime = Field(sa_column=_ts(nullable=False))
    headline: str = Field(default="", max_length=1000)  # the first article's title
    articles: int = 0
    sources: int = 0  # distinct publishers
    languages: str = Field(default="", max_length=100)  # comma-separated, first seen first


class StoryArticle(SQLModel, table=True):
    """Which story an article belongs to, and what the clusterer needs to compare new arrivals with it."""

    __tablename__ = "story_articles"
    __table_args__ = (sa.Index("ix_story_articles_story", "story_id"),)

    # Assignment order: processes that share the database catch up on each other's work by `seq`.
    seq: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(
        foreign_key="articles.id", sa_column_kwargs={"unique": True}, nullable=False, ondelete="CASCADE"
    )
    story_id: int = Field(foreign_key="stories.id", nullable=False, ondelete="CASCADE")
    novel: bool = False  # the story's first article
    source: str = Field(default="", max_length=300)  # publisher domain or name
    language: str | None = Field(default=None, max_length=16)
    happened_at: datetime = Field(sa_column=_ts(nullable=False))
    similarity: float = 1.0  # to the article it matched (1.0 for the first)
    basis: str = Field(default="first", max_length=16)  # first | text | meaning
    vector: bytes | None = Field(default=None, sa_type=sa.LargeBinary)  # float16 unit vector of its meaning


class StoryTopic(SQLModel, table=True):
    """One vote per (story, topic): what story-counted windows, coverage share and history read.

    Recomputed from `article_topics` for a story whenever its articles or their scores change.
    """

    __tablename__ = "story_topics"
    __table_args__ = (sa.Index("ix_story_topics_topic_first_seen", "topic", "first_seen"),)

    story_id: int = Field(foreign_key="stories.id", primary_key=True, ondelete="CASCADE")
    topic: str = Field(max_length=64, primary_key=True)
    first_seen: datetime = Field(sa_column=_ts(nullable=False))  # copy of stories.first_seen
    articles: int = 0
    sources: int = 0
    sentiment: float = 0.0  # mean of its articles' sentiment toward the topic
    label: str = Field(default="neutral", max_length=16)  # the label most of its articles carry


class Alert(SQLModel, table=True):
    """Current state of one alert identity: the fingerprint of (rule, topic)."""

    __tablename__ = "alerts"

    fingerprint: str = Field(max_length=64, primary_key=True)
    rule: str = Field(max_length=100, index=True)
    topic: str = Field(max_length=100)  # a configured topic, or a feed's name (feed health)
    state: str = Field(max_length=16, index=True)  # inactive | pending | firing | resolved
    value: float | None = None
    threshold: float | None = None
    article_count: int = 0
    pending_since: datetime | None = Field(default=None, sa_column=_ts())
    fired_at: datetime | None = Field(default=None, sa_column=_ts())
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
    last_notified_at: datetime | None = Field(default=None, sa_column=_ts())
    last_evaluated_at: datetime | None = Field(default=None, sa_column=_ts())
    # The current episode's first chat message (a Slack bot post: channel and ts); each receiver's own
    # message is on its `notifications` row. Named `slack_channel`/`slack_ts` before revision 0004.
    message_channel: str | None = Field(default=None, max_length=100)
    message_id: str | None = Field(default=None, max_length=255)
    fired_event_id: int | None = None  # AlertEvent id of the `fired` event that opened the current episode
    version: int = 0  # optimistic concurrency: every state write is `... WHERE version = <read version>`


class AlertEvent(SQLModel, table=True):
    """Alert history: every transition (pending, fired, reminder, resolved)."""

    __tablename__ = "alert_events"
    __table_args__ = (sa.Index("ix_alert_events_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, index=True)
    rule: str = Field(max_length=100)
    topic: str = Field(max_length=100)  # a configured topic, or a feed's name (feed health)
    kind: str = Field(max_length=16)  # pending | fired | reminder | resolved | cancelled
    value: float | None = None
    threshold: float | None = None
    article_count: int = 0
    at: datetime = Field(sa_column=_ts(nullable=False))
    detail: str | None = Field(default=None, sa_type=sa.Text)  # JSON


class Notification(SQLModel, table=True):
    """The outbox: written in the same transaction as the alert transition, delivered later.

    One row per receiver of a transition (unique on the two), so each receiver is retried, fails and is
    redelivered on its own: one receiver's outage never holds back or duplicates another's message.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_status_next", "status", "next_attempt_at"),
        sa.UniqueConstraint("alert_event_id", "receiver", name="uq_notifications_event_receiver"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # None: a message with no alert transition behind it (a digest, see `Digest`).
    alert_event_id: int | None = Field(default=None, foreign_key="alert_events.id")
    # A configured receiver's name (`receivers:`), or `default`: the `slack:` destination, else the console.
    receiver: str = Field(default="default", max_length=100, sa_column_kwargs={"server_default": "default"})
    fingerprint: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # fired | reminder | resolved | digest
    payload: str = Field(sa_type=sa.Text)  # JSON: text fallback, blocks, thread/update info
    status: str = Field(default="pending", max_length=16)  # pending | sending | delivered | failed
    # pending: when the next attempt is due; sending: when the claim expires (then another worker recovers it)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=_ts())
    channel: str | None = Field(default=None, max_length=100)  # where it went, when the receiver says (Slack)
    # The receiver's id of the delivered message: Slack's ts, an e-mail's Message-ID (`slack_ts` before 0004).
    message_id: str | None = Field(default=None, max_length=255)
    # The last attempt may have reached Slack without an answer (timeout, 5xx, crash while sending):
    # in bot mode the next attempt first looks for the message's marker in the channel.
    outcome_unknown: bool = False
    delivered_via: str | None = Field(default=None, max_length=16)  # bot | webhook | console | http | smtp


class Digest(SQLModel, table=True):
    """One digest claimed for one period (monitor/digest): what makes it go out once per period.

    Inserted in the same transaction as its outbox rows (`monitor.store.digests.claim`). The unique
    (name, period_start) lets exactly one of several replicas, or a restarted process, claim a period.
    """

    __tablename__ = "digests"
    __table_args__ = (sa.UniqueConstraint("name", "period_start", name="uq_digests_name_period"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    period_start: datetime = Field(sa_column=_ts(nullable=False))  # UTC, the start of the covered period
    period_end: datetime = Field(sa_column=_ts(nullable=False))  # when it was due
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    receivers: str = Field(default="", max_length=1000)  # the receivers it was queued for, comma-separated


class Silence(SQLModel, table=True):
    """A silence (Alertmanager's term): while active, matching alerts' transitions are recorded, not sent.

    Written only through `monitor.store.silences`. A matcher left empty (NULL) matches anything; at least one
    is set. Active while `starts_at <= now < ends_at`; expiring it early moves `ends_at` to that moment and
    records `expired_at`, so the row stays as history.
    """

    __tablename__ = "silences"
    __table_args__ = (sa.Index("ix_silences_ends_at", "ends_at"),)

    id: int | None = Field(default=None, primary_key=True)
    rule: str | None = Field(default=None, max_length=100)
    topic: str | None = Field(default=None, max_length=100)
    severity: str | None = Field(default=None, max_length=16)
    starts_at: datetime = Field(sa_column=_ts(nullable=False))
    ends_at: datetime = Field(sa_column=_ts(nullable=False))
    reason: str = Field(max_length=1000)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    expired_at: datetime | None = Field(default=None, sa_column=_ts())  # expired early (`silence expire`)
