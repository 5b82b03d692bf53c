"""`monitor history`: the per-topic sentiment time series from the terminal."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from monitor.cli._common import App, emit, format_option, handle_errors, since_option, until_option
from monitor.params import ParamError, check_topics, time_range
from monitor.store.history import BUCKETS, history
from monitor.store.story_history import COUNTS, story_history

HISTORY_COLUMNS = ["topic", "bucket_start", "articles", "mean_sentiment", "negative_share", "positive_share"]
STORY_HISTORY_COLUMNS = [
    "topic",
    "bucket_start",
    "stories",
    "articles",
    "mean_sentiment",
    "negative_share",
    "positive_share",
    "all_stories",
    "coverage_share",
]


def param_errors(func: Callable) -> Callable:
    """A ParamError becomes a usage error naming the option (`--since`), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ParamError as exc:
            raise click.BadParameter(exc.message, param_hint=f"--{exc.param.replace('_', '-')}") from None

    return wrapper


@click.command("history")
@click.option(
    "--topic", "topics", multiple=True, metavar="TOPIC", help="Topic to show (repeatable; default: all)."
)
@since_option("7d")
@until_option()
@click.option(
    "--bucket", type=click.Choice(list(BUCKETS)), default="1h", show_default=True, help="Bucket size."
)
@click.option(
    "--tz", default="UTC", show_default=True, help="IANA time zone for bucket starts (e.g. Europe/Berlin)."
)
@click.option(
    "--count",
    type=click.Choice(list(COUNTS)),
    default="articles",
    show_default=True,
    help="articles: every copy counts; stories: each story once, in the bucket it was first seen, "
    "with its coverage_share of all stories.",
)
@format_option()
@click.pass_obj
@handle_errors
@param_errors
def history_command(
    app: App,
    topics: tuple[str, ...],
    since: str,
    until: str | None,
    bucket: str,
    tz: str,
    count: str,
    output_format: str,
) -> None:
    """Per-topic sentiment over time: articles, mean sentiment, negative and positive share per bucket.

    Buckets are aligned to the bucket size in --tz (days start at local midnight); empty buckets are
    listed with 0 articles. Times are ISO 8601, UTC unless --tz. With --count stories each story counts
    once (its per-topic vote), and coverage_share is the topic's share of all stories in the bucket: for
    ai_bubble, the AI-bubble index.
    """
    selected = check_topics(topics, list(app.settings.topics))
    start, end = time_range(since, until)
    if count == "stories":
        points = story_history(app.engine(), selected, start, end, bucket, tz)
        emit([p.as_dict() for p in points], output_format, STORY_HISTORY_COLUMNS)
        return
    points = history(app.engine(), selected, start, end, bucket, tz)
    emit([p.as_dict() for p in points], output_format, HISTORY_COLUMNS)


def register(cli: click.Group) -> None:
    cli.add_command(history_command)
