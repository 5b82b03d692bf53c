"""The wiring: sources -> transforms -> sinks, in one place.

    collect (per feed)  -> ArticleCollected
    classify (batches)  -> ArticleScored        (stored by the classifier through monitor.store.scores)
    stories             -> StoryAssigned        (one event, many copies: monitor.stories)
    alerts (rules)      -> AlertFired / AlertResolved   (state change + outbox row in one transaction)
    notify (outbox)     -> Slack or console

Each stage is built from settings once and handed the previous stage's events. `monitor collect`
runs `run_pass` once; `monitor run` schedules the same methods (monitor/scheduler.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from monitor.config import FeedConfig, Settings
from monitor.events import AlertFired, AlertResolved, ArticleCollected, ArticleScored, StoryAssigned

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    """What one collection pass did, feed by feed (printed by `monitor collect`)."""

    feeds: list = field(default_factory=list)  # monitor.collect.FeedResult, one per feed
    scored: int = 0
    alert_events: list[AlertFired | AlertResolved] = field(default_factory=list)
    delivered: int = 0
    failed_deliveries: int = 0

    @property
    def new_articles(self) -> int:
        return sum(result.new for result in self.feeds)

    @property
    def updated_articles(self) -> int:
        return sum(result.updated for result in self.feeds)


class Pipeline:
    """Builds every stage from the settings and moves events between them."""

    def __init__(
        self, settings: Settings, engine: Engine, *, classifier=None, load_model: bool = True
    ) -> None:  # noqa: ANN001
        from monitor.alerts import RuleEngine
        from monitor.collect import Collector
        from monitor.notify import Deliverer
        from monitor.stories import StoryStage

        self.settings = settings
        self.engine = engine
        self.collector = Collector(settings, engine)
        self._classifier = classifier
        if self._classifier is None and load_model:
            self._classifier = self._build_classifier()
        self.stories = StoryStage(settings.stories, engine)
        self.rules = RuleEngine(settings, engine)
        self.deliverer = Deliverer(settings, engine)

    def _build_classifier(self):  # noqa: ANN202
        from monitor.classify import Classifier

        return Classifier.from_settings(self.settings)

    @property
    def classifier(self):  # noqa: ANN201
        if self._classifier is None:
            self._classifier = self._build_classifier()
        return self._classifier

    # ------------------------------------------------------------------ stages

    def collect_feed(self, feed: FeedConfig):  # noqa: ANN201
        """Fetch, parse, normalise, dedupe and store one feed; never raises for a feed's own failure."""
        return self.collector.collect_feed(feed)

    def score(self, events: Sequence[ArticleCollected]) -> list[ArticleScored]:
        """Score articles and place them in stories (the rules read both)."""
        if not events:
            return []
        scored = self.classifier.score_articles(self.engine, list(events))
        self.place(scored)
        return scored

    def place(self, scored: Sequence[ArticleScored]) -> list[StoryAssigned]:
        return self.stories.assign(scored)

    def evaluate(self, now: datetime | None = None) -> list[AlertFired | AlertResolved]:
        return self.rules.evaluate(now=now)

    def deliver(self, now: datetime | None = None, wait: float = 0.0):  # noqa: ANN201
        return self.deliverer.deliver_due(now=now, wait=wait)

    def score_missing(
        self,
        limit: int | None = 1000,
        min_age: timedelta | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Score stored articles that have no score yet (a pass killed between storing and scoring).

        Their feed reports them as unchanged on the next poll, so nothing else would ever score them.
        `limit=None` scores all of them, page by page (the start-up recovery, before rules see the data).
        `min_age` skips articles collected more recently (a concurrent pass may still be scoring them).
        `stop` ends the run between pages (shutdown). Logs how many and how long: the recovery time.
        """
        from monitor.classify.rescore import rescore_stored
        from monitor.timeutil import utcnow

        started = time.monotonic()
        before = utcnow() - min_age if min_age else None
        done = rescore_stored(
            self.classifier,
            self.engine,
            only_missing=True,
            collected_before=before,
            limit=limit,
            stop=stop,
            on_scored=self.place,
        )
        if done:
            log.info(
                "scored articles a previous run left unscored",
                extra={"articles": done, "seconds": round(time.monotonic() - started, 2)},
            )
        return done

    # ------------------------------------------------------------------ a whole pass

    def process_feed(self, feed: FeedConfig):  # noqa: ANN201
        """One feed through every stage: what each scheduled feed job runs."""
        result = self.collect_feed(feed)
        scored = self.score(result.events)
        if scored and self.evaluate():
            self.deliver()  # a transition goes out now, not at the next delivery tick (claims make this safe)
        return result, len(scored)

    def run_pass(self, feed_names: Sequence[str] | None = None) -> PassReport:
        """`monitor collect`: every (or the named) feed now, then rules and delivery."""
        feeds = [self.settings.feed(name) for name in feed_names] if feed_names else self.settings.feeds
        report = PassReport()
        resumed = self.score_missing(limit=None)  # all of them: the rules below must see a complete picture
        results = self.collector.collect_many([f for f in feeds if f.enabled or feed_names])
        events = [event for result in results for event in result.events]
        report.feeds = results
        report.scored = resumed + len(self.score(events))
        report.alert_events = self.evaluate()
        delivery = self.deliver(wait=self.settings.notify.collect_wait.total_seconds())
        report.delivered = delivery.delivered
        report.failed_deliveries = delivery.failed
        log.info(
            "pass finished",
            extra={
                "feeds": len(results),
                "new": report.new_articles,
                "updated": report.updated_articles,
                "scored": report.scored,
                "alert_events": len(report.alert_events),
            },
        )
        return report
