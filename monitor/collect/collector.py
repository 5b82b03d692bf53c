"""The collector: fetch -> parse -> normalise -> dedupe -> store, per feed, emitting ArticleCollected.

A feed's own failure (network, HTTP status, not a feed, malformed XML) never raises: it becomes the
status and error of its FeedResult and of its row in `feeds` (with exponential backoff). The article
writes and the feed's new validators are committed in one transaction, so a crash between the two
can never leave an ETag that hides entries which were not stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor import metrics
from monitor.collect.dedupe import dedupe_entries
from monitor.collect.fetch import Fetcher, FetchError, FetchResponse
from monitor.collect.normalize import normalize_entry
from monitor.collect.parse import ParsedFeed, ParseError, parse_feed
from monitor.config import FeedConfig, Settings
from monitor.events import ArticleCollected
from monitor.store import articles as article_store
from monitor.store import feeds as feed_store
from monitor.store.db import is_sqlite, session_scope
from monitor.timeutil import utcnow

log = logging.getLogger(__name__)

STATUSES = ("ok", "not_modified", "malformed", "error", "backoff")

# SQLite has one writer at a time; serialising this process's writers avoids busy-waiting on each other.
_sqlite_locks: dict[str, threading.Lock] = {}
_sqlite_locks_guard = threading.Lock()


@dataclass
class FeedResult:
    """What one poll of one feed did."""

    feed: str
    status: str  # ok | not_modified | malformed | error | backoff
    http_status: int | None = None
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str | None = None  # the error, or for `malformed` the problem found
    events: list[ArticleCollected] = field(default_factory=list)
    duration: float = 0.0
    reason: str | None = None  # short label of the error: timeout, http_5xx, html, redirect_loop, ...
    url: str | None = None  # the URL finally fetched
    moved_to: str | None = None  # a permanent redirect's target, now polled instead
    entries: int = 0  # entries in the document
    duplicates: int = 0  # entries repeated inside the document
    skipped: int = 0  # entries with nothing to store (no title, text or link)
    encoding: str | None = None
    next_poll_at: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "not_modified", "malformed")

    @classmethod
    def failure(
        cls,
        feed: str,
        started: float,
        error: str,
        reason: str,
        http_status: int | None = None,
        url: str | None = None,
    ) -> FeedResult:
        """An `error` result; `started` is the poll's time.monotonic() start."""
        return cls(
            feed=feed,
            status="error",
            http_status=http_status,
            error=error,
            reason=reason,
            url=url,
            duration=time.monotonic() - started,
        )


class Collector:
    """Polls feeds into the article store. Thread-safe; one shared HTTP client."""

    def __init__(self, settings: Settings, engine: Engine | None) -> None:
        self.settings = settings
        self.engine = engine
        self.fetcher = Fetcher(settings.collect, own_port=settings.http.port)

    def close(self) -> None:
        """Abort fetches in flight (they end within a fraction of a second) and close the client."""
        self.fetcher.close()

    # ------------------------------------------------------------------ many feeds

    def collect_many(self, feeds: Sequence[FeedConfig], *, respect_backoff: bool = False) -> list[FeedResult]:
        """Poll feeds concurrently (at most settings.collect.concurrency at once), results in input order."""
        if not feeds:
            return []
        states = feed_store.ensure_feeds(self._engine(), [(f.name, f.url) for f in feeds], utcnow())
        return self._map(
            lambda f: self.collect_feed(f, respect_backoff=respect_backoff, state=states.get(f.name)), feeds
        )

    def check_many(self, feeds: Sequence[FeedConfig]) -> list[FeedResult]:
        """Fetch and parse every feed once, storing nothing (`monitor feeds check`)."""
        return self._map(self.check_feed, feeds)

    def _map(self, func, feeds: Sequence[FeedConfig]) -> list[FeedResult]:  # noqa: ANN001
        if not feeds:
            return []
        workers = max(1, min(self.settings.collect.concurrency, len(feeds)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collect") as pool:
            return list(pool.map(func, feeds))

    # ------------------------------------------------------------------ one feed

    def collect_feed(
        self, feed: FeedConfig, *, respect_backoff: bool = False, state: feed_store.FeedState | None = None
    ) -> FeedResult:
        """Poll one feed and store its entries. Never raises for the feed's own failure."""
        started = time.monotonic()
        now = utcnow()
        try:
            if state is None:
                state = feed_store.ensure_feeds(self._engine(), [(feed.name, feed.url)], now)[feed.name]
            if respect_backoff and state.in_backoff(now):
                result = FeedResult(
                    feed=feed.name,
                    status="backoff",
                    error=state.last_error,
                    next_poll_at=state.next_poll_at,
                    http_status=state.last_http_status,
                )
                metrics.record_poll(feed.name, "backoff")
                return result
            return self._poll(feed, state, now, started)
        except Exception as exc:  # noqa: BLE001 - a bug or a database failure must not stop the other feeds
            log.exception("feed poll failed unexpectedly", extra={"feed": feed.name})
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = f"internal error: {type(exc).__name__}: {detail}"
            if state is not None:
                try:
                    feed_store.record_failure(
                        self._engine(),
                        state.id,
                        now=now,
                        error=message,
                        http_status=None,
                        every=feed.every,
                        max_backoff=self.settings.collect.max_backoff,
                    )
                except Exception:  # noqa: BLE001
                    log.warning("could not record the failure of feed", extra={"feed": feed.name})
            metrics.record_poll(feed.name, "error", time.monotonic() - started)
            metrics.record_fetch_error(feed.name, "internal")
            return FeedResult.failure(feed.name, started, message, "internal")

    def _poll(
        self, feed: FeedConfig, state: feed_store.FeedState, now: datetime, started: float
    ) -> FeedResult:
        try:
            response = self.fetcher.fetch(state.fetch_url, etag=state.etag, last_modified=state.last_modified)
        except FetchError as exc:
            if exc.reason == "cancelled":  # shutting down: not the feed's fault, nothing to record
                return FeedResult.failure(feed.name, started, str(exc), "cancelled", url=exc.url)
            return self._failed(
                feed, state, now, started, exc.reason, str(exc), exc.http_status, exc.retry_after, url=exc.url
            )
        moved = response.permanent_url
        if moved:
            log.warning(
                "feed moved permanently; polling the new URL from now on (update the config to silence this)",
                extra={"feed": feed.name, "from": state.fetch_url, "to": moved},
            )
        if response.not_modified:
            with self._writing() as session:
                feed_store.record_success(
                    session,
                    state.id,
                    now=now,
                    status="not_modified",
                    http_status=304,
                    every=feed.every,
                    etag=response.etag or state.etag,
                    last_modified=response.last_modified or state.last_modified,
                    current_url=moved,
                    # An unchanged malformed document is still malformed: keep saying so.
                    problem=state.last_error
                    if state.consecutive_errors == 0 and state.last_status in ("malformed", "not_modified")
                    else None,
                )
            return self._finish(
                FeedResult(
                    feed=feed.name,
                    status="not_modified",
                    http_status=304,
                    url=response.url,
                    moved_to=moved,
                    next_poll_at=now + feed.every,
                ),
                started,
            )
        try:
            parsed = parse_feed(response.body, response.content_type, response.url)
        except ParseError as exc:
            return self._failed(
                feed, state, now, started, exc.reason, str(exc), response.status, None, url=response.url
            )
        inputs, result = self._entries(feed, parsed, response, now)
        status = "malformed" if parsed.problem else "ok"
        with self._writing() as session:
            feed_store.record_success(
                session,
                state.id,
                now=now,
                status=status,
                http_status=response.status,
                every=feed.every,
                etag=response.etag,
                last_modified=response.last_modified,
                current_url=moved,
                problem=parsed.problem,
                entries_seen=len(parsed.entries),
            )
            outcome = article_store.store_articles(session, feed_id=state.id, items=inputs, now=now)
        result.status = status
        result.error = parsed.problem
        result.moved_to = moved
        result.new = len(outcome.new)
        result.updated = len(outcome.updated)
        result.unchanged = outcome.unchanged
        result.next_poll_at = now + feed.every
        result.events = [_event(feed.name, article_id, item, False) for article_id, item in outcome.new]
        result.events += [_event(feed.name, article_id, item, True) for article_id, item in outcome.updated]
        for event in result.events:
            log.debug(
                "article stored",
                extra={
                    "feed": feed.name,
                    "article_id": event.article_id,
                    "update": event.is_update,
                    "url": event.url,
                },
            )
        if parsed.problem:
            log.warning(
                "feed is malformed; stored what parsed", extra={"feed": feed.name, "problem": parsed.problem}
            )
        metrics.record_articles_stored(feed.name, new=result.new, updated=result.updated)
        return self._finish(result, started)

    def _entries(
        self, feed: FeedConfig, parsed: ParsedFeed, response: FetchResponse, now: datetime
    ) -> tuple[list[article_store.ArticleInput], FeedResult]:
        hint = feed.language or parsed.language
        entries = []
        skipped = 0
        for raw in parsed.entries:
            entry = normalize_entry(raw, now=now, base_url=response.url, language_hint=hint)
            if entry is None:
                skipped += 1
            else:
                entries.append(entry)
        inputs, duplicates = dedupe_entries(
            entries, feed_name=feed.name, not_article_urls=(parsed.link, response.url, response.requested_url)
        )
        result = FeedResult(
            feed=feed.name,
            status="ok",
            http_status=response.status,
            url=response.url,
            entries=len(parsed.entries),
            duplicates=duplicates,
            skipped=skipped,
            encoding=parsed.encoding,
            notes=list(parsed.notes),
        )
        return inputs, result

    def _failed(
        self,
        feed: FeedConfig,
        state: feed_store.FeedState,
        now: datetime,
        started: float,
        reason: str,
        message: str,
        http_status: int | None,
        retry_after: float | None,
        *,
        url: str | None = None,
    ) -> FeedResult:
        next_poll = feed_store.record_failure(
            self._engine(),
            state.id,
            now=now,
            error=message,
            http_status=http_status,
            every=feed.every,
            max_backoff=self.settings.collect.max_backoff,
            retry_after=retry_after,
        )
        log.warning(
            "feed poll failed",
            extra={
                "feed": feed.name,
                "reason": reason,
                "error": message,
                "next_poll_at": next_poll.isoformat(),
            },
        )
        metrics.record_fetch_error(feed.name, reason)
        return self._finish(
            FeedResult(
                feed=feed.name,
                status="error",
                http_status=http_status,
                error=message,
                reason=reason,
                url=url,
                next_poll_at=next_poll,
            ),
            started,
        )

    def _finish(self, result: FeedResult, started: float) -> FeedResult:
        result.duration = time.monotonic() - started
        metrics.record_poll(result.feed, result.status, result.duration)
        if result.status != "error":
            log.info(
                "feed polled",
                extra={
                    "feed": result.feed,
                    "status": result.status,
                    "http_status": result.http_status,
                    "new": result.new,
                    "updated": result.updated,
                    "unchanged": result.unchanged,
                    "seconds": round(result.duration, 3),
                },
            )
        return result

    # ------------------------------------------------------------------ check only

    def check_feed(self, feed: FeedConfig) -> FeedResult:
        """Fetch (unconditionally) and parse one feed; nothing is stored."""
        started = time.monotonic()
        now = utcnow()
        try:
            response = self.fetcher.fetch(feed.url)
            parsed = parse_feed(response.body, response.content_type, response.url)
        except FetchError as exc:
            return FeedResult.failure(
                feed.name, started, str(exc), exc.reason, http_status=exc.http_status, url=exc.url
            )
        except ParseError as exc:
            return FeedResult.failure(
                feed.name, started, str(exc), exc.reason, http_status=response.status, url=response.url
            )
        except Exception as exc:  # noqa: BLE001
            log.exception("feed check failed unexpectedly", extra={"feed": feed.name})
            return FeedResult.failure(feed.name, started, f"internal error: {exc}", "internal")
        inputs, result = self._entries(feed, parsed, response, now)
        result.status = "malformed" if parsed.problem else "ok"
        result.error = parsed.problem
        result.moved_to = response.permanent_url
        result.new = len(inputs)  # entries that would be stored (before comparing with the database)
        result.duration = time.monotonic() - started
        return result

    # ------------------------------------------------------------------ plumbing

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("this Collector has no database (check-only)")
        return self.engine

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        engine = self._engine()
        if not is_sqlite(engine):
            with session_scope(engine) as session:
                yield session
            return
        key = str(engine.url)
        with _sqlite_locks_guard:
            lock = _sqlite_locks.setdefault(key, threading.Lock())
        with lock, session_scope(engine) as session:
            yield session


def _event(feed: str, article_id: int, item: article_store.ArticleInput, is_update: bool) -> ArticleCollected:
    return ArticleCollected(
        article_id=article_id,
        feed=feed,
        title=item.title,
        summary=item.summary,
        url=item.url,
        language=item.language,
        published_at=item.published_at,
        is_update=is_update,
    )
