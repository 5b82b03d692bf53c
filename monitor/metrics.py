"""Prometheus metrics every stage increments, exposed by the HTTP server at `/metrics`.

Stages call the small `record_*` / `observe_*` helpers below (never the prometheus_client objects
directly), so the names and labels stay in one place. Labels are bounded: feed names come from the
config, statuses and kinds from small fixed sets. Gauges that describe stored state (alerts by state,
outbox backlog) are computed from the database at scrape time by `monitor.api` instead.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# One registry for the process; `monitor.api` renders it (plus scrape-time gauges) at /metrics.
REGISTRY = CollectorRegistry(auto_describe=True)

FEED_POLLS = Counter(
    "monitor_feed_polls_total",
    "Feed polls, by feed and outcome (ok, not_modified, malformed, error, backoff).",
    ["feed", "status"],
    registry=REGISTRY,
)
FEED_FETCH_ERRORS = Counter(
    "monitor_feed_fetch_errors_total",
    "Feed fetches that failed, by feed and reason (timeout, connect, http_4xx, http_5xx, too_large, ...).",
    ["feed", "reason"],
    registry=REGISTRY,
)
FEED_LAST_SUCCESS = Gauge(
    "monitor_feed_last_success_timestamp_seconds",
    "Unix time of the last successful poll (ok or not_modified) per feed.",
    ["feed"],
    registry=REGISTRY,
)
FEED_FETCH_SECONDS = Histogram(
    "monitor_feed_fetch_duration_seconds",
    "Time to fetch and parse one feed.",
    ["feed"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
ARTICLES_STORED = Counter(
    "monitor_articles_stored_total",
    "Articles written to the store, by feed and kind (new, updated).",
    ["feed", "kind"],
    registry=REGISTRY,
)
ARTICLES_SCORED = Counter(
    "monitor_articles_scored_total",
    "Articles scored by the sentiment model.",
    registry=REGISTRY,
)
SCORING_SECONDS = Histogram(
    "monitor_scoring_duration_seconds",
    "Time to score one batch of articles (model inference plus storing the scores).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
ALERT_TRANSITIONS = Counter(
    "monitor_alert_transitions_total",
    "Alert state transitions, by rule and kind (pending, fired, reminder, resolved, cancelled).",
    ["rule", "kind"],
    registry=REGISTRY,
)
NOTIFICATION_ATTEMPTS = Counter(
    "monitor_notification_attempts_total",
    "Notification delivery attempts, by channel (bot, webhook, console) and kind (fired, reminder, ...).",
    ["channel", "kind"],
    registry=REGISTRY,
)
NOTIFICATION_FAILURES = Counter(
    "monitor_notification_failures_total",
    "Failed notification delivery attempts, by channel and reason (rate_limited, server_error, ...).",
    ["channel", "reason"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "monitor_http_requests_total",
    "HTTP requests served, by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "monitor_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)


# ----------------------------------------------------------------------------- helpers the stages call


def record_poll(feed: str, status: str, duration: float | None = None, at: datetime | None = None) -> None:
    """One poll of a feed finished with `status`; ok/not_modified also set the last-success time."""
    FEED_POLLS.labels(feed=feed, status=status).inc()
    if duration is not None:
        FEED_FETCH_SECONDS.labels(feed=feed).observe(duration)
    if status in ("ok", "not_modified"):
        record_success(feed, at)


def record_success(feed: str, at: datetime | None = None) -> None:
    """Set the last successful poll time of a feed (now unless `at`)."""
    gauge = FEED_LAST_SUCCESS.labels(feed=feed)
    if at is None:
        gauge.set_to_current_time()
    else:
        gauge.set(at.timestamp())


def record_fetch_error(feed: str, reason: str) -> None:
    FEED_FETCH_ERRORS.labels(feed=feed, reason=reason).inc()


def record_articles_stored(feed: str, new: int = 0, updated: int = 0) -> None:
    if new:
        ARTICLES_STORED.labels(feed=feed, kind="new").inc(new)
    if updated:
        ARTICLES_STORED.labels(feed=feed, kind="updated").inc(updated)


def observe_scoring(seconds: float, articles: int) -> None:
    """One scoring batch of `articles` took `seconds`."""
    SCORING_SECONDS.observe(seconds)
    if articles:
        ARTICLES_SCORED.inc(articles)


def record_alert_transition(rule: str, kind: str) -> None:
    ALERT_TRANSITIONS.labels(rule=rule, kind=kind).inc()


def record_notification(channel: str, kind: str, ok: bool, reason: str | None = None) -> None:
    """One delivery attempt; a failure also counts under `reason`."""
    NOTIFICATION_ATTEMPTS.labels(channel=channel, kind=kind).inc()
    if not ok:
        NOTIFICATION_FAILURES.labels(channel=channel, reason=reason or "error").inc()


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_SECONDS.labels(route=route).observe(seconds)


# ----------------------------------------------------------------------------- task queue (monitor/queue.py)

TASKS_ENQUEUED = Counter(
    "monitor_tasks_enqueued_total",
    "Task-queue messages sent, by queue (collect, score).",
    ["queue"],
    registry=REGISTRY,
)
TASKS = Counter(
    "monitor_tasks_total",
    "Task-queue messages processed by this worker, by queue and outcome (ok, failed, skipped).",
    ["queue", "outcome"],
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "monitor_task_latency_seconds",
    "Time from enqueueing a task to the end of its processing (queue wait plus work), by queue.",
    ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "monitor_queue_depth",
    "Messages waiting in the broker, by queue and kind (ready, delayed for a retry, dead-lettered).",
    ["queue", "kind"],
    registry=REGISTRY,
)


def record_enqueued(queue: str, count: int = 1) -> None:
    TASKS_ENQUEUED.labels(queue=queue).inc(count)


def observe_task(queue: str, outcome: str, latency: float | None) -> None:
    TASKS.labels(queue=queue, outcome=outcome).inc()
    if latency is not None and latency >= 0:
        TASK_SECONDS.labels(queue=queue).observe(latency)


def set_queue_depth(queue: str, ready: int, delayed: int, dead: int) -> None:
    for kind, value in (("ready", ready), ("delayed", delayed), ("dead", dead)):
        QUEUE_DEPTH.labels(queue=queue, kind=kind).set(value)
