"""`/api/*`: sentiment history, articles, stories, alerts and topics as JSON - the CLI's queries over HTTP.

Every parameter is parsed into a typed value (monitor.params) and bound by the store functions;
no SQL is ever built from request text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session

from monitor.alerts.explain import describe_event, episode_evidence
from monitor.api.silences import router as silences_router
from monitor.config import FEED_HEALTH_RULE
from monitor.params import ParamError, check_score_range, check_search, check_topics, time_range
from monitor.store import alerts as alert_store
from monitor.store import feeds as feed_store
from monitor.store.articles import SORTS, ArticleFilter, list_articles
from monitor.store.history import BUCKETS, history
from monitor.store.stories import (
    STORY_SORTS,
    StoryFilter,
    check_story_sort,
    get_story,
    list_stories,
    story_dicts,
)
from monitor.store.story_history import COUNTS, story_history
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


class StoryPoint(BaseModel):
    bucket_start: str = Field(description="Bucket start, ISO 8601 (UTC `Z`, or the offset of `tz`).")
    stories: int = Field(description="Stories about the topic first seen in the bucket; each counts once.")
    articles: int = Field(
        description="The articles (copies included) those stories gathered about the topic."
    )
    mean_sentiment: float | None = Field(description="Mean of the stories' votes; null for an empty bucket.")
    negative_share: float | None = Field(description="Share of the stories whose vote is negative.")
    positive_share: float | None
    all_stories: int = Field(description="Stories with any topic first seen in the bucket.")
    coverage_share: float | None = Field(
        description="stories / all_stories: the topic's share of the coverage (for ai_bubble: the AI-bubble "
        "index); null when the bucket has no stories."
    )
    topic: str


class SentimentResponse(BaseModel):
    since: str
    until: str
    bucket: str
    tz: str
    count: str = Field(description="What a point counts: `articles` or `stories`.")
    topics: list[str]
    # Stories first: an article point lacks `stories`, so it can only be read as a SentimentPoint.
    points: list[StoryPoint] | list[SentimentPoint] = Field(
        description="Per topic (in `topics` order), then bucket in time order.", union_mode="left_to_right"
    )


Count = Literal["articles", "stories"]
if set(Count.__args__) != set(COUNTS):
    raise RuntimeError("monitor.api.routes.Count differs from monitor.store.story_history.COUNTS")


@router.get(
    "/history",
    response_model=SentimentResponse,
    tags=["queries"],
    summary="Per-topic history (the data of `monitor history`; the same as /api/sentiment)",
    description=f"At most {MAX_POINTS:,} points (topics x buckets) per response; more answers 422. "
    "`count=stories&topic=ai_bubble` gives the AI-bubble index as `coverage_share`.",
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
    count: Annotated[
        Count,
        Query(
            description="`articles`: every copy counts (the default); `stories`: each story once, in the "
            "bucket it was first seen, with its `coverage_share` of all stories."
        ),
    ] = "articles",
) -> dict[str, Any]:
    selected = _topics(request, topic)
    start, end = time_range(since, until)
    query = story_history if count == "stories" else history
    points = query(request.app.state.engine, selected, start, end, bucket, tz, max_points=MAX_POINTS)
    return {
        "since": isoformat(start),
        "until": isoformat(end),
        "bucket": bucket,
        "tz": tz,
        "count": count,
        "topics": selected,
        "points": [p.as_dict() for p in points],
    }


# ----------------------------------------------------------------------------- alerts


class AlertEpisode(BaseModel):
    id: int | None = Field(
        default=None, description="Its fired event (else its first event); `/api/alerts/{id}` explains it."
    )
    rule: str
    topic: str
    state: str = Field(description="pending | firing | resolved | cancelled")
    started_at: str
    fired_at: str | None
    resolved_at: str | None
    value: float | None = Field(description="Metric value at the latest transition.")
    threshold: float | None
    stories: int | None = Field(default=None, description="Stories in the window when it fired.")
    articles: int = Field(description="Articles in the window when it fired.")
    sources: int | None = Field(default=None, description="Distinct publishers in the window when it fired.")
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
        # feed-health alerts carry a feed's name as their topic: listed unless topics are asked for
        if (e.topic in selected or (topic is None and e.rule == FEED_HEALTH_RULE))
        and (state is None or e.state == state)
        and (rule is None or e.rule == rule)
    ]
    found.sort(key=lambda e: (e.started_at, e.rule), reverse=True)
    page = found[offset : offset + limit]
    with Session(request.app.state.engine) as session:
        evidence = episode_evidence(session, page)
    return {
        "since": isoformat(start),
        "until": isoformat(end),
        "total": len(found),
        "offset": offset,
        "limit": limit,
        "items": [_episode(e, ev) for e, ev in zip(page, evidence, strict=True)],
    }


def _episode(episode: alert_store.Episode, evidence: dict[str, Any]) -> dict[str, Any]:
    row = {**episode.as_row(), **evidence}
    return {k: isoformat(v) if isinstance(v, datetime) else v for k, v in row.items()}


class AlertEventDetail(BaseModel):
    id: int
    fingerprint: str
    rule: str
    topic: str
    kind: str = Field(description="pending | fired | reminder | resolved | cancelled")
    at: str
    value: float | None
    threshold: float | None
    explanation: dict[str, Any] = Field(
        description="Why: value, threshold and clear level, window, stories/sources/articles counted, "
        "baseline or coverage, top stories (`headlines`), and `previous` (the last notice)."
    )
    episode: list[dict[str, Any]] = Field(description="The episode's events: id, kind, at, value.")
    notification: dict[str, Any] | None = Field(description="Its notification's delivery, if notified.")
    notifications: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Its delivery to each receiver it was routed to: id, receiver, status, attempts, "
        "delivered_at, delivered_via, error.",
    )


@router.get(
    "/alerts/{event_id}",
    response_model=AlertEventDetail,
    tags=["queries"],
    summary="Why an alert fired: one alert event explained (the data of `monitor alerts show`)",
    responses={404: {"description": "No alert event with this id."}},
)
def alert_event(
    request: Request, event_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="An alert event id.")]
) -> dict[str, Any] | JSONResponse:
    with Session(request.app.state.engine) as session:
        found = describe_event(session, event_id, request.app.state.settings.alerts)
    if found is None:
        message = f"no alert event with id {event_id}"
        return JSONResponse(status_code=404, content={"error": message, "detail": message})
    return found


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
    story_id: int | None = Field(description="The story the article belongs to; null while not placed yet.")
    novel: bool | None = Field(description="Whether the article opened its story; null while not placed yet.")


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


# ----------------------------------------------------------------------------- stories


class StoryTopicOut(BaseModel):
    topic: str
    sentiment: float = Field(description="Mean sentiment of the story's articles toward the topic.")
    label: str = Field(description="The label most of its articles carry toward the topic.")
    articles: int
    sources: int


class StoryOut(BaseModel):
    id: int
    headline: str = Field(description="The title of the story's first article.")
    url: str | None = Field(description="The link of its earliest article.")
    first_seen: str
    last_seen: str
    articles: int
    sources: int = Field(description="Distinct publishers that carried it.")
    source_names: list[str]
    languages: list[str]
    topics: list[StoryTopicOut]


class StoriesResponse(BaseModel):
    since: str
    until: str
    topic: str | None
    sort: str
    limit: int
    items: list[StoryOut]


class StoryMemberOut(BaseModel):
    id: int
    title: str
    url: str | None
    source: str
    language: str | None
    happened_at: str
    novel: bool = Field(description="The article that opened the story.")
    basis: str = Field(
        description="How it joined: `first`, `text` (headline words) or `meaning` (the model)."
    )
    similarity: float = Field(description="Similarity to the article it matched (1.0 for the first).")


class StoryDetail(StoryOut):
    members: list[StoryMemberOut]


StorySort = Literal["recent", "sources", "most_negative", "most_positive"]
if set(StorySort.__args__) != set(STORY_SORTS):
    raise RuntimeError("monitor.api.routes.StorySort differs from monitor.store.stories.STORY_SORTS")


@router.get(
    "/stories",
    response_model=StoriesResponse,
    tags=["queries"],
    summary="Stories: one event, many copies (the data of `monitor stories`)",
)
def stories(
    request: Request,
    topic: Annotated[str | None, Query(description="Only stories about this topic.", max_length=64)] = None,
    since: Annotated[str, Query(description=SINCE_HELP + " On first_seen.", max_length=64)] = "24h",
    until: Annotated[str | None, Query(description=UNTIL_HELP, max_length=64)] = None,
    search: Annotated[
        str | None,
        Query(description="Text in the headline of the story or of one of its articles.", max_length=200),
    ] = None,
    sort: Annotated[
        StorySort,
        Query(description="`recent`, `sources` (most first), or by sentiment toward `topic` (needs it)."),
    ] = "recent",
    limit: Annotated[int, Query(ge=1, le=1000, description="How many (1-1000).")] = 50,
) -> dict[str, Any]:
    if topic is not None and topic.strip():
        topic = check_topics([topic], list(request.app.state.settings.topics))[0]
    else:
        topic = None
    check_story_sort(sort, topic)
    start, end = time_range(since, until, default_since="24h")
    flt = StoryFilter(
        topic=topic, since=start, until=end, search=check_search(search), limit=limit, order=sort
    )
    engine = request.app.state.engine
    return {
        "since": isoformat(start),
        "until": isoformat(end),
        "topic": topic,
        "sort": sort,
        "limit": limit,
        "items": story_dicts(engine, list_stories(engine, flt)),
    }


@router.get(
    "/stories/{story_id}",
    response_model=StoryDetail,
    tags=["queries"],
    summary="One story with its articles (the data of `monitor stories show`)",
    responses={404: {"description": "No story with this id."}},
)
def story(
    request: Request, story_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The story's id.")]
) -> dict[str, Any] | JSONResponse:
    engine = request.app.state.engine
    found = get_story(engine, story_id)
    if found is None:
        message = f"no story with id {story_id}"
        return JSONResponse(status_code=404, content={"error": message, "detail": message})
    row, members = found
    return {**story_dicts(engine, [row])[0], "members": members}


# ----------------------------------------------------------------------------- silences (api/silences.py)

router.include_router(silences_router)
