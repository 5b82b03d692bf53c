"""`/api/*`: sentiment history, articles, alerts and topics as JSON - the CLI's queries over HTTP.

Every parameter is parsed into a typed value (monitor.params) and bound by the store functions;
no SQL is ever built from request text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from monitor.params import ParamError, check_score_range, check_search, check_topics, time_range
from monitor.store import alerts as alert_store
from monitor.store import feeds as feed_store
from monitor.store.articles import SORTS, ArticleFilter, list_articles
from monitor.store.history import BUCKETS, history
from monitor.timeutil import isoformat

router = APIRouter()

Bucket = Literal["15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d"]
if set(Bucket.__args__) != set(BUCKETS):  # keep the API's choices in step with the store
    raise RuntimeError("monitor.api.routes.Bucket differs from monitor.store.history.BUCKETS")

SINCE_HELP = (
    "Start: a duration back from now (24h, 7d) or an ISO 8601 date/time (UTC unless it has an offset)."
)
UNTIL_HELP = "End (exclusive): a duration back from now or an ISO 8601 date/time. Default: now."
TOPIC_HELP = (
    "Topic name; repeat (`topic=a&topic=b`) or separate with commas. Default: every configured topic."
)
# Points (topics x buckets) in one /api/sentiment response: 90 days of hours for four topics fit; a
# request beyond answers 422 instead of building megabytes of JSON on the scheduler's CPU.
MAX_POINTS = 10_000


def _topics(request: Request, topic: list[str] | None) -> list[str]:
    names = [part for value in (topic or []) for part in value.split(",")]
    return check_topics(names, list(request.app.state.settings.topics))


# ----------------------------------------------------------------------------- topics


class TopicInfo(BaseModel):
    name: str
    description: str
    keywords: list[str]


@router.get("/topics", response_model=list[TopicInfo], tags=["queries"], summary="The configured topics")
def topics(request: Request) -> list[TopicInfo]:
    return [
        TopicInfo(name=name, description=topic.description, keywords=list(topic.keywords))
        for name, topic in request.app.state.settings.topics.items()
    ]


# ----------------------------------------------------------------------------- sentiment history


class SentimentPoint(BaseModel):
    bucket_start: str = Field(description="Bucket start, ISO 8601 (UTC `Z`, or the offset of `tz`).")
    articles: int
    mean_sentiment: float | None = Field(
        description="Mean topic sentiment in [-1, 1]; null for an empty bucket."
    )
    negative_share: float | None
    positive_share: float | None
    topic: str


class SentimentResponse(BaseModel):
    since: str
    until: str
    bucket: str
    tz: str
    topics: list[str]
    points: list[SentimentPoint] = Field(
        description="Per topic (in `topics` order), then bucket in time order."
    )


@router.get(
    "/sentiment",
    response_model=SentimentResponse,
    tags=["queries"],
    summary="Per-topic sentiment history (the data of `monitor history`)",
    description=f"At most {MAX_POINTS:,} points (topics x buckets) per response; more answers 422.",
)
def sentiment(
    request: Request,
    topic: Annotated[list[str] | None, Query(description=TOPIC_HELP)] = None,
    since: Annotated[str, Query(description=SINCE_HELP, max_length=64)] = "7d",
    until: Annotated[str | None, Query(description=UNTIL_HELP, max_length=64)] = None,
    bucket: Annotated[Bucket, Query(description="Bucket size; days start at local midnight of `tz`.")] = "1h",
    tz: Annotated[str, Query(description="IANA time zone of the bucket starts.", max_length=64)] = "UTC",
) -> dict[str, Any]:
    selected = _topics(request, topic)
    start, end = time_range(since, until)
    points = history(request.app.state.engine, selected, start, end, bucket, tz, max_points=MAX_POINTS)
    return {
        "since": isoformat(start),
        "until": isoformat(end),
        "bucket": bucket,
        "tz": tz,
        "topics": selected,
        "points": [p.as_dict() for p in points],
    }


# ----------------------------------------------------------------------------- alerts


class AlertEpisode(BaseModel):
    rule: str
    topic: str
    state: str = Field(description="pending | firing | resolved | cancelled")
    started_at: str
    fired_at: str | None
    resolved_at: str | None
    value: float | None = Field(description="Metric value at the latest transition.")
    threshold: float | None
    articles: int
    reminders: int
    reason: str | None
    notification: str | None = Field(description="Delivery status of the 'fired' notification.")
    notification_error: str | None = Field(
        description="Why the 'fired' notification's last attempt failed, as stored (null once delivered)."
    )
    fingerprint: str


class AlertsResponse(BaseModel):
    since: str
    until: str
    total: int
    offset: int
    limit: int
    items: list[AlertEpisode]


AlertState = Literal["pending", "firing", "resolved", "cancelled"]


@router.get(
    "/alerts",
    response_model=AlertsResponse,
    tags=["queries"],
    summary="Alert history as episodes (the data of `monitor alerts`)",
)
def alerts(
    request: Request,
    since: Annotated[str, Query(description=SINCE_HELP, max_length=64)] = "7d",
    until: Annotated[str | None, Query(description=UNTIL_HELP, max_length=64)] = None,
    state: Annotated[AlertState | None, Query(description="Only episodes in this state.")] = None,
    topic: Annotated[list[str] | None, Query(description=TOPIC_HELP)] = None,
    rule: Annotated[str | None, Query(description="Only this rule.", max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000).")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Episodes to skip (newest first).")] = 0,
) -> dict[str, Any]:
    start, end = time_range(since, until)
    selected = set(_topics(request, topic))
    if rule is not None:
        # Configured rules, and rules that left the configuration but have stored history.
        known = {r.name for r in request.app.state.settings.alerts}
        known |= alert_store.rule_names(request.app.state.engine)
        if rule not in known:
            raise ParamError("rule", f"unknown rule {rule!r} (known: {', '.join(sorted(known)) or 'none'})")
    with Session(request.app.state.engine) as session:
        found = alert_store.episodes(session, since=start, until=end)
    found = [
        e
        for e in found
        if e.topic in selected and (state is None or e.state == state) and (rule is None or e.rule == rule)
    ]
    found.sort(key=lambda e: (e.started_at, e.rule), reverse=True)
    page = found[offset : offset + limit]
    return {
        "since": isoformat(start),
        "until": isoformat(end),
        "total": len(found),
        "offset": offset,
        "limit": limit,
        "items": [_episode(e) for e in page],
    }


def _episode(episode: alert_store.Episode) -> dict[str, Any]:
    row = episode.as_row()
    return {k: isoformat(v) if isinstance(v, datetime) else v for k, v in row.items()}


# ----------------------------------------------------------------------------- articles


class TopicScoreOut(BaseModel):
    topic: str
    relevance: float
    sentiment: float
    label: str


class ArticleOut(BaseModel):
    id: int
    title: str
    url: str | None
    feed: str
    source: str | None
    language: str | None
    published_at: str | None = Field(description="As the feed gave it; null when the entry had no date.")
    collected_at: str
    happened_at: str = Field(description="published_at, else collected_at: the time the filters use.")
    updated_at: str | None
    revision: int
    summary: str
    score: float | None = Field(description="Article sentiment in [-1, 1]; null while not yet scored.")
    label: str | None
    confidence: float | None
    model: str | None
    topics: list[TopicScoreOut]
    topic_relevance: float | None = Field(description="With exactly one `topic`: that topic's relevance.")
    topic_sentiment: float | None = Field(description="With exactly one `topic`: that topic's sentiment.")
    topic_label: str | None


class ArticlesResponse(BaseModel):
    since: str | None
    until: str
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")
    items: list[ArticleOut]


Sort = Literal["newest", "oldest", "most_negative", "most_positive"]
if set(Sort.__args__) != set(SORTS):
    raise RuntimeError("monitor.api.routes.Sort differs from monitor.store.articles.SORTS")
Label = Literal["negative", "neutral", "positive"]
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$"


@router.get(
    "/articles",
    response_model=ArticlesResponse,
    tags=["queries"],
    summary="Stored articles with their scores (the data of `monitor articles`)",
)
def articles(
    request: Request,
    topic: Annotated[
        list[str] | None, Query(description="Articles about any of these topics. " + TOPIC_HELP)
    ] = None,
    since: Annotated[str, Query(description=SINCE_HELP, max_length=64)] = "24h",
    until: Annotated[str | None, Query(description=UNTIL_HELP, max_length=64)] = None,
    search: Annotated[
        str | None,
        Query(
            description="Words that must all appear in the title or summary "
            "(case-insensitive, matched literally).",
            max_length=200,
        ),
    ] = None,
    feed: Annotated[list[str] | None, Query(description="Feed name(s) as configured.")] = None,
    language: Annotated[
        str | None, Query(description="Language code; `zh` also matches `zh-TW`.", pattern=LANGUAGE_PATTERN)
    ] = None,
    label: Annotated[Label | None, Query(description="Sentiment label (topic label with one topic).")] = None,
    min_score: Annotated[
        float | None, Query(ge=-1, le=1, description="Lowest sentiment (topic sentiment with one topic).")
    ] = None,
    max_score: Annotated[float | None, Query(ge=-1, le=1, description="Highest sentiment.")] = None,
    sort: Annotated[Sort, Query(description="Order of the results.")] = "newest",
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000).")] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000, description="Rows to skip (use `next_offset`).")] = 0,
) -> dict[str, Any]:
    names = [part for value in (topic or []) for part in value.split(",") if part.strip()]
    selected = check_topics(names, list(request.app.state.settings.topics)) if names else []
    start, end = time_range(since, until, default_since="24h")  # `since=` (empty) keeps the 24h default
    check_score_range(min_score, max_score)
    text = check_search(search)
    feeds = [part.strip() for value in (feed or []) for part in value.split(",") if part.strip()]
    engine = request.app.state.engine
    if feeds:
        known = {state.name for state in feed_store.list_feeds(engine)}
        known |= {f.name for f in request.app.state.settings.feeds}
        unknown = [name for name in feeds if name not in known]
        if unknown:
            raise ParamError(
                "feed", f"unknown feed {unknown[0]!r} (known: {', '.join(sorted(known)) or 'none'})"
            )
    flt = ArticleFilter(
        topics=tuple(selected),
        since=start,
        until=end,
        search=text,
        feeds=tuple(feeds),
        language=language,
        label=label,
        min_score=min_score,
        max_score=max_score,
        sort=sort,
        limit=limit + 1,
        offset=offset,
    )
    rows = list_articles(engine, flt)
    more = len(rows) > limit
    return {
        "since": isoformat(start),
        "until": isoformat(end),
        "offset": offset,
        "limit": limit,
        "next_offset": offset + limit if more else None,
        "items": [_article(row.as_dict()) for row in rows[:limit]],
    }


def _article(data: dict[str, Any]) -> dict[str, Any]:
    return {k: isoformat(v) if isinstance(v, datetime) else v for k, v in data.items()}
