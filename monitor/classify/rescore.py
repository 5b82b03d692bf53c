"""Score stored articles again, page by page: after a model change, or those a killed pass left unscored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from monitor.events import ArticleCollected, ArticleScored
from monitor.store.scores import articles_to_rescore


def rescore_stored(
    classifier,  # noqa: ANN001 - monitor.classify.Classifier
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    only_missing: bool = False,
    collected_before: datetime | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    on_page: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    on_scored: Callable[[list[ArticleScored]], object] | None = None,
) -> int:
    """Score every matching stored article (at most `limit`); returns how many were scored.

    `stop` is asked before each page, so a long run (a start-up backlog) ends promptly on shutdown.
    `on_scored` receives each page's events (the pipeline places them in stories)."""
    done, after_id = 0, 0
    while (limit is None or done < limit) and not (stop is not None and stop()):
        page = articles_to_rescore(
            engine,
            since=since,
            until=until,
            only_missing=only_missing,
            collected_before=collected_before,
            after_id=after_id,
            limit=batch_size if limit is None else min(batch_size, limit - done),
        )
        if not page:
            break
        events = [
            ArticleCollected(
                article_id=a.article_id,
                feed="",
                title=a.title,
                summary=a.summary,
                url=None,
                language=a.language,
                published_at=a.published_at,
                is_update=not only_missing,
            )
            for a in page
        ]
        scored = classifier.score_articles(engine, events)
        if on_scored is not None:
            on_scored(scored)
        done += len(scored)
        after_id = page[-1].article_id
        if on_page is not None:
            on_page(done)
    return done


def stale_scores(classifier, engine: Engine) -> dict[str, int]:  # noqa: ANN001 - monitor.classify.Classifier
    """Stored scores made by a model other than those loaded now ("name@version": count), for a start-up note
    that `monitor rescore` brings the stored history onto the current model."""
    from monitor.store.scores import score_counts_by_model

    current = {(m["name"], m["version"]) for m in classifier.describe()["models"].values()}
    return {
        f"{name}@{version}": count
        for (name, version), count in score_counts_by_model(engine).items()
        if (name, version) not in current
    }
