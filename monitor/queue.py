"""Beyond one machine: feed polls and scoring batches as task-queue messages (Dramatiq on RabbitMQ).

With `queue.broker_url` (`MONITOR_BROKER_URL`) set, `monitor run` claims due feeds from the database as it
always does with PostgreSQL, but enqueues each claimed poll instead of running it; `monitor worker` processes:

    collect  poll_feed(feed, claimed_at)   fetch -> parse -> normalise -> dedupe -> store (the collector),
                                           then the new and changed articles go to `score` as events
    score    score_articles([events])      ArticleCollected events (monitor/events.py, serialised): score,
                                           place in stories, evaluate rules, deliver (the same pipeline
                                           methods as in one process)

Messages carry identifiers and the events of monitor/events.py, never rows: a scoring worker reads each
article's current text from the database by id. Every effect is idempotent, so a message delivered twice
changes nothing: articles are upserted by their dedupe key; a poll whose feed was already polled after the
claim is not repeated; an article already scored since its last change is not scored again (scores are one
row per article); rule transitions are conditional on the alert's version and the outbox claims its rows.

Dramatiq acknowledges a message only after its actor returned, so a worker killed mid-task (even SIGKILL)
loses nothing: RabbitMQ hands the unacknowledged message to another worker as soon as the dead worker's
connection closes. A failing task is retried with backoff (Dramatiq's Retries), then dead-lettered
(`<queue>.XQ`, counted in `/metrics`). A scoring worker batches across messages: its worker threads hand
their events to one `ScoreBatcher`, which runs the model on up to `queue.score_batch` articles at once, and
each message is acknowledged once its own articles are stored.
"""

from __future__ import annotations

import logging
import queue as _queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta

import dramatiq
import sqlalchemy as sa
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AgeLimit, Middleware, Retries, ShutdownNotifications, TimeLimit
from sqlalchemy.engine import Engine

from monitor import metrics
from monitor.events import ArticleCollected, from_message, to_message
from monitor.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

COLLECT = "collect"
SCORE = "score"
QUEUES = (COLLECT, SCORE)

POLL_TIME_LIMIT_MS = 5 * 60 * 1000  # a poll has its own total deadline (collect.total_timeout, 60 s)
SCORE_TIME_LIMIT_MS = 15 * 60 * 1000

# The worker process installs its handlers here (WorkerRuntime); the producer side only sends.
_handlers: dict[str, Callable[..., None]] = {}


def _poll_feed(feed: str, claimed_at: str) -> None:
    _handlers["poll"](feed, datetime.fromisoformat(claimed_at))


def _score_articles(events: list[dict]) -> None:
    _handlers["score"](events)


class TaskMetrics(Middleware):
    """Counts processed messages by outcome and observes their latency (enqueue -> done) for /metrics."""

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:  # noqa: ANN001
        latency = time.time() - message.message_timestamp / 1000
        metrics.observe_task(message.queue_name, "ok" if exception is None else "failed", latency)

    def after_skip_message(self, broker, message) -> None:  # noqa: ANN001
        metrics.observe_task(message.queue_name, "skipped", None)


def make_broker(url: str) -> RabbitmqBroker:
    """A RabbitMQ broker with the middleware the monitor relies on (no Prometheus exporter of Dramatiq's
    own: the monitor's metrics are in monitor.metrics)."""
    middleware = [AgeLimit(), TimeLimit(), ShutdownNotifications(), Retries(), TaskMetrics()]
    return RabbitmqBroker(url=url, middleware=middleware, confirm_delivery=True)


class TaskQueue:
    """The producer side (also used by workers to pass polls' events on to `score`)."""

    def __init__(self, url: str, *, score_batch: int = 64, prefix: str = "") -> None:
        self.url = url
        self.score_batch = score_batch
        self.names = {name: f"{prefix}{name}" for name in QUEUES}  # logical -> broker queue name
        self.broker = make_broker(url)
        self.poll_actor = dramatiq.actor(
            _poll_feed,
            actor_name="poll_feed",
            queue_name=self.names[COLLECT],
            broker=self.broker,
            max_retries=3,
            min_backoff=2_000,
            time_limit=POLL_TIME_LIMIT_MS,
        )
        self.score_actor = dramatiq.actor(
            _score_articles,
            actor_name="score_articles",
            queue_name=self.names[SCORE],
            broker=self.broker,
            max_retries=10,
            min_backoff=1_000,
            max_backoff=60_000,
            time_limit=SCORE_TIME_LIMIT_MS,
        )

    # ------------------------------------------------------------------ send

    def poll(self, feed: str, claimed_at: datetime) -> None:
        self.poll_actor.send(feed, as_utc(claimed_at).isoformat())
        metrics.record_enqueued(COLLECT)

    def score(self, events: Sequence[ArticleCollected]) -> int:
        """Enqueue events for scoring, `score_batch` per message; returns the number of messages."""
        messages = 0
        for start in range(0, len(events), self.score_batch):
            chunk = [to_message(event) for event in events[start : start + self.score_batch]]
            self.score_actor.send(chunk)
            messages += 1
        if messages:
            metrics.record_enqueued(SCORE, messages)
        return messages

    def score_missing(self, engine: Engine, min_age: timedelta | None) -> int:
        """Enqueue every stored article without a score (collected more than `min_age` ago): what a poll
        worker killed between storing and enqueueing left behind. Returns how many."""
        from monitor.store.scores import articles_to_rescore

        before = utcnow() - min_age if min_age else None
        done, after_id = 0, 0
        while True:
            page = articles_to_rescore(
                engine, only_missing=True, collected_before=before, after_id=after_id, limit=1000
            )
            if not page:
                break
            self.score(
                [_event(a.article_id, "", a.title, a.summary, a.language, a.published_at) for a in page]
            )
            done += len(page)
            after_id = page[-1].article_id
        if done:
            log.info("unscored articles enqueued for scoring", extra={"articles": done})
        return done

    # ------------------------------------------------------------------ operations

    def depth(self) -> dict[str, tuple[int, int, int]]:
        """(ready, delayed, dead-lettered) messages per queue."""
        return {name: tuple(self.broker.get_queue_message_counts(self.names[name])) for name in QUEUES}

    def observe_depth(self) -> dict[str, tuple[int, int, int]]:
        """Read the queue depths into /metrics; raises when the broker is unreachable (the job fails)."""
        depths = self.depth()
        for name, (ready, delayed, dead) in depths.items():
            metrics.set_queue_depth(name, ready, delayed, dead)
        return depths

    def declare(self) -> None:
        for name in QUEUES:
            self.broker.declare_queue(self.names[name])

    def delete(self) -> None:
        """Delete the queues (with their delay and dead-letter queues): tests and benches clean up."""
        from dramatiq.common import dq_name, xq_name

        for name in self.names.values():
            for queue_name in (name, dq_name(name), xq_name(name)):
                self.broker.channel.queue_delete(queue_name)

    def close(self) -> None:
        try:
            self.broker.close()
        except Exception:  # noqa: BLE001 - closing on shutdown
            log.debug("closing the broker connection failed", exc_info=True)


def _event(article_id, feed, title, summary, language, published_at, url=None, is_update=False):  # noqa: ANN001, ANN202
    return ArticleCollected(
        article_id=article_id,
        feed=feed,
        title=title or "",
        summary=summary or "",
        url=url,
        language=language,
        published_at=published_at,
        is_update=is_update,
    )


# ----------------------------------------------------------------------------- worker side


class ScoreBatcher:
    """Batches scoring across messages: worker threads `submit` their events and wait; one thread scores up
    to `max_batch` articles at once (waiting `linger` seconds for more) and wakes each submitter when its own
    articles are stored, so each message is acknowledged only after its effect."""

    def __init__(
        self, score: Callable[[list[ArticleCollected]], object], max_batch: int, linger: float = 0.05
    ):
        self._score = score
        self.max_batch = max_batch
        self.linger = linger
        self._items: _queue.Queue[tuple[list[ArticleCollected], Future]] = _queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="score-batcher", daemon=True)
        self._thread.start()

    def submit(self, events: list[ArticleCollected]) -> None:
        future: Future = Future()
        self._items.put((events, future))
        future.result()  # raises what scoring raised: the message is retried

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._items.get(timeout=0.2)
            except _queue.Empty:
                continue
            batch = [first]
            size = len(first[0])
            deadline = time.monotonic() + self.linger
            while size < self.max_batch:
                try:
                    item = self._items.get(timeout=max(0.0, deadline - time.monotonic()))
                except _queue.Empty:
                    break
                batch.append(item)
                size += len(item[0])
            events: dict[int, ArticleCollected] = {}
            for item_events, _ in batch:
                for event in item_events:
                    events[event.article_id] = event  # one article in two messages: scored once
            try:
                self._score(list(events.values()))
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting message
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for _, future in batch:
                    future.set_result(None)


def current_texts(engine: Engine, ids: Sequence[int]) -> dict[int, sa.Row]:
    """The articles to score among `ids`: their current text, unless already scored since their last change
    (a redelivered or repeated message). Articles deleted meanwhile are left out."""
    from monitor.store.tables import Article, ArticleScore

    articles, scores = Article.__table__, ArticleScore.__table__
    changed = sa.func.coalesce(articles.c.updated_at, articles.c.collected_at)
    query = (
        sa.select(
            articles.c.id,
            articles.c.title,
            articles.c.summary,
            articles.c.language,
            articles.c.published_at,
            articles.c.url,
        )
        .select_from(articles.outerjoin(scores, scores.c.article_id == articles.c.id))
        .where(articles.c.id.in_(sorted(set(ids))))
        .where(sa.or_(scores.c.article_id.is_(None), scores.c.scored_at < changed))
    )
    with engine.connect() as connection:
        return {row.id: row for row in connection.execute(query)}


class WorkerRuntime:
    """What `monitor worker` runs: the pipeline's stages behind the two actors."""

    def __init__(self, settings, engine: Engine, queues: Sequence[str], *, threads: int = 8) -> None:  # noqa: ANN001
        from monitor.pipeline import Pipeline

        if not settings.queue.broker_url:
            raise ValueError("monitor worker needs a broker: set MONITOR_BROKER_URL (or queue.broker_url)")
        self.settings = settings
        self.engine = engine
        self.queues = tuple(queues)
        self.threads = threads
        self.feeds = {feed.name: feed for feed in settings.feeds if feed.enabled}
        self.tasks = TaskQueue(
            settings.queue.broker_url, score_batch=settings.queue.score_batch, prefix=settings.queue.prefix
        )
        self.pipeline = Pipeline(settings, engine, load_model=SCORE in self.queues)
        self.batcher = ScoreBatcher(self.score_batch, settings.queue.score_batch)
        self.worker: dramatiq.Worker | None = None
        _handlers["poll"] = self.handle_poll
        _handlers["score"] = self.handle_score

    # ------------------------------------------------------------------ handlers

    def handle_poll(self, name: str, claimed_at: datetime) -> None:
        from monitor.store import feeds as feed_store

        feed = self.feeds.get(name)
        if feed is None:
            log.warning(
                "poll of a feed this worker's config does not name (or disables); dropped",
                extra={"feed": name},
            )
            return
        state = feed_store.get_feed(self.engine, name)
        if (
            state is not None
            and state.last_polled_at is not None
            and as_utc(state.last_polled_at) >= claimed_at
        ):
            # Polled since this claim: a redelivered message (its worker died after storing) or a repeated
            # claim. Not fetched again; whatever that poll stored but never handed on is scored now.
            events = self._unscored_of(state.id, claimed_at)
            log.info(
                "poll already done since its claim; not repeated",
                extra={"feed": name, "unscored": len(events)},
            )
        else:
            events = self.pipeline.collect_feed(feed).events
        if events:
            self.tasks.score(events)

    def _unscored_of(self, feed_id: int, since: datetime) -> list[ArticleCollected]:
        from monitor.store.tables import Article, ArticleScore

        articles, scores = Article.__table__, ArticleScore.__table__
        query = sa.select(articles.c.id).where(
            articles.c.feed_id == feed_id,
            articles.c.collected_at >= since,
            ~sa.exists().where(scores.c.article_id == articles.c.id),
        )
        with self.engine.connect() as connection:
            ids = list(connection.execute(query).scalars())
        return [_event(i, "", "", "", None, None) for i in ids]  # texts are read by the scoring worker

    def handle_score(self, messages: list[dict]) -> None:
        self.batcher.submit([from_message(message) for message in messages])

    def score_batch(self, events: list[ArticleCollected]) -> None:
        rows = current_texts(self.engine, [event.article_id for event in events])
        todo = [
            _event(e.article_id, e.feed, r.title, r.summary, r.language, r.published_at, r.url, e.is_update)
            for e in events
            if (r := rows.get(e.article_id)) is not None
        ]
        if not todo:
            return
        scored = self.pipeline.score(todo)
        if scored and self.pipeline.evaluate():
            self.pipeline.deliver()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.tasks.declare()
        queues = {self.tasks.names[name] for name in self.queues}
        self.worker = dramatiq.Worker(self.tasks.broker, worker_threads=self.threads, queues=queues)
        self.worker.start()
        log.info("worker started", extra={"queues": ",".join(self.queues), "threads": self.threads})

    def stop(self, timeout: float = 8.0) -> None:
        """Stop consuming; let running messages finish (their acks go out); unstarted prefetched ones are
        returned to the broker. Then close the collector and the batcher."""
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout * 1000))
        self.batcher.stop()
        self.pipeline.collector.close()
        self.tasks.close()
        log.info("worker stopped")
