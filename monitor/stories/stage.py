"""The stories stage: ArticleScored in, StoryAssigned out.

Every process keeps a `StoryIndex` of the recent window and catches up, under the assignment lock, on what
other processes placed since (`story_articles.seq`), so schedulers sharing one database agree on stories.
An article placed before (a rescore, an edited headline) keeps its story; its story's votes are refreshed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.engine import Connection, Engine

from monitor.config import StoriesConfig
from monitor.events import ArticleScored, StoryAssigned
from monitor.store import stories as store
from monitor.stories._embed import MeaningEmbedder
from monitor.stories._text import Features, meaning_text, source_of
from monitor.stories.cluster import Match, Member, StoryIndex, Thresholds, signature
from monitor.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)


def _vector(raw: bytes | None) -> np.ndarray | None:
    if not raw:
        return None
    vector = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else None


class StoryStage:
    """Places scored articles in stories; one per process, built from `settings.stories`."""

    def __init__(
        self, config: StoriesConfig, engine: Engine, embedder: MeaningEmbedder | None = None
    ) -> None:
        self.config = config
        self.engine = engine
        self.embedder = embedder or MeaningEmbedder()
        self.index = StoryIndex(
            window=config.window,
            thresholds=Thresholds(
                text=config.text_threshold,
                meaning=config.meaning_threshold,
                cross_language=config.cross_language_threshold,
            ),
        )
        self._seq = 0  # the last assignment this process has seen
        self._horizon: datetime | None = None

    # ------------------------------------------------------------------ live

    def assign(self, scored: Sequence[ArticleScored], now: datetime | None = None) -> list[StoryAssigned]:
        """Place each scored article in a story; returns one event per article still stored."""
        if not self.config.enabled or not scored:
            return []
        started = time.monotonic()
        ids = [event.article_id for event in scored]
        topics = {event.article_id: frozenset(t.name for t in event.topics) for event in scored}
        vectors = self._embed_new(ids)  # outside the lock: the slow part
        with store.assignment_transaction(self.engine) as connection:
            self._catch_up(connection, now or utcnow())
            events = self._place(connection, ids, vectors, topics)
        log.debug(
            "stories assigned",
            extra={
                "articles": len(events),
                "new_stories": sum(e.novel for e in events),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return events

    def _embed_new(self, ids: list[int]) -> dict[int, np.ndarray | None]:
        """Meaning vectors of the articles not placed yet (a rescored article keeps its story)."""
        with self.engine.connect() as connection:
            placed = store.stories_of(connection, ids)
            facts = store.article_facts(connection, [i for i in ids if i not in placed])
        return self._vectors(facts)

    def _vectors(self, facts: dict[int, store.ArticleFacts]) -> dict[int, np.ndarray | None]:
        wanted = [k for k, f in facts.items() if Features.of(f.title, f.summary).enough]
        vectors = self.embedder.embed([meaning_text(facts[k].title, facts[k].summary) for k in wanted])
        return {k: vectors[row] for row, k in enumerate(wanted)}

    def _catch_up(self, connection: Connection, now: datetime) -> None:
        """Add what other processes placed since, and forget stories nothing new may join."""
        horizon = as_utc(now) - 2 * self.config.window
        if self._horizon is None or horizon - self._horizon > timedelta(minutes=5):
            self.index.evict_before(horizon)
            self._horizon = horizon
        while True:
            rows = store.members_since(connection, self._seq, horizon)
            if not rows:
                break
            topics = store.article_topic_names(connection, [r.article_id for r in rows])
            for row in rows:
                self.index.add(
                    Member(
                        key=row.article_id,
                        story_id=row.story_id,
                        story_first_seen=as_utc(row.story_first_seen),
                        happened_at=as_utc(row.happened_at),
                        features=Features.of(row.title, row.summary),
                        vector=_vector(row.vector),
                        topics=topics.get(row.article_id, frozenset()),
                    )
                )
            self._seq = rows[-1].seq
        self._seq = max(self._seq, store.last_seq(connection))

    def _place(
        self,
        connection: Connection,
        ids: list[int],
        vectors: dict[int, np.ndarray | None],
        topics: dict[int, frozenset[str]],
        replace: bool = False,
    ) -> list[StoryAssigned]:
        facts = store.article_facts(connection, ids)
        placed_before = {} if replace else store.stories_of(connection, list(facts))
        events: list[StoryAssigned] = []
        placements: list[store.Placement] = []
        kept: set[int] = set()
        headlines: list[tuple[str, datetime]] = []  # new stories, in provisional-id order
        for article_id in sorted(facts, key=lambda k: (as_utc(facts[k].happened_at), k)):
            fact = facts[article_id]
            if article_id in placed_before:
                kept.add(placed_before[article_id])
                events.append(StoryAssigned(article_id, placed_before[article_id], False, "kept", 1.0))
                continue
            happened_at = as_utc(fact.happened_at)
            features = Features.of(fact.title, fact.summary)
            vector = vectors.get(article_id)
            minhash = signature(features) if features.enough else None
            match: Match | None = self.index.match(
                features, vector, happened_at, topics.get(article_id, ()), minhash
            )
            if match is None:
                story_id = -(len(headlines) + 1)  # provisional: the rows are inserted together below
                headlines.append((fact.title, happened_at))
                first_seen, novel, basis, similarity = happened_at, True, "first", 1.0
            else:
                story_id, novel, basis, similarity = match.story_id, False, match.basis, match.similarity
                first_seen = self.index.first_seen(match.article_id)
            placements.append(
                store.Placement(
                    article_id=article_id,
                    story_id=story_id,
                    novel=novel,
                    source=source_of(fact.source, fact.url, fact.feed),
                    language=fact.language,
                    happened_at=happened_at,
                    similarity=similarity,
                    basis=basis,
                    vector=vector.astype(np.float16).tobytes() if vector is not None else None,
                )
            )
            self.index.add(
                Member(
                    article_id,
                    story_id,
                    first_seen,
                    happened_at,
                    features,
                    vector,
                    topics.get(article_id, frozenset()),
                    minhash,
                )
            )
            events.append(StoryAssigned(article_id, story_id, novel, basis, similarity))
        if headlines:
            real = store.new_stories(connection, headlines)
            placements = [self._settle(p, real) for p in placements]
            events = [
                dataclasses.replace(e, story_id=real[-e.story_id - 1]) if e.story_id < 0 else e
                for e in events
            ]
        if placements:
            self._seq = store.add_members(connection, placements)
        if kept:
            store.refresh_stories(connection, kept)
        return events

    def _settle(self, placement: store.Placement, real: list[int]) -> store.Placement:
        """Swap a provisional story id (-1, -2, ...) for the inserted row's, here and in the index."""
        if placement.story_id >= 0:
            return placement
        story_id = real[-placement.story_id - 1]
        self.index.move(placement.article_id, story_id)
        return dataclasses.replace(placement, story_id=story_id)

    # ------------------------------------------------------------------ stored history

    def rebuild(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 500,
        on_page: Callable[[int], None] | None = None,
    ) -> int:
        """Place the stored articles of [since, until) again, oldest first, as if they arrived now: after an
        upgrade or a change of thresholds. The meaning vector stored with a placement is reused; returns the
        articles placed."""
        self.index = StoryIndex(window=self.config.window, thresholds=self.index.thresholds)
        self._horizon = None
        done = 0
        after: tuple[datetime, int] | None = None
        while True:
            rows = store.articles_to_place(self.engine, since=since, until=until, after=after, limit=page)
            if not rows:
                break
            with store.assignment_transaction(self.engine) as connection:
                self.index.evict_before(as_utc(rows[0].happened_at) - 2 * self.config.window)
                ids = [r.article_id for r in rows]
                vectors = {r.article_id: _vector(r.vector) for r in rows if r.vector}
                missing = [i for i in ids if i not in vectors]
                if missing:
                    vectors.update(self._vectors(store.article_facts(connection, missing)))
                topics = store.article_topic_names(connection, ids)
                done += len(self._place(connection, ids, vectors, topics, replace=True))
            self._seq = 0  # the live path catches up from the start of its window again
            after = (as_utc(rows[-1].happened_at), rows[-1].article_id)
            if on_page is not None:
                on_page(done)
        log.info("stories rebuilt", extra={"articles": done})
        return done
