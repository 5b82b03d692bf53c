"""`monitor collect`, `monitor feeds ...` and `monitor articles`."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from monitor.cli._common import App, emit, format_option, handle_errors
from monitor.config import default_config_path, parse_duration
from monitor.params import ParamError, check_topics, time_range
from monitor.timeutil import isoformat

SUMMARY_COLUMNS = ["feed", "status", "http", "new", "updated", "unchanged", "seconds", "detail"]


def _param_errors(func: Callable) -> Callable:
    """A bad --since/--until/--topic value: a usage error naming the option."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ParamError as exc:
            raise click.BadParameter(exc.message, param_hint=f"--{exc.param}") from None

    return wrapper


def _detail(result: Any) -> str:
    if result.error:
        return result.error
    parts = []
    if result.moved_to:
        parts.append(f"moved permanently to {result.moved_to}")
    if result.duplicates:
        parts.append(f"{result.duplicates} duplicate entries")
    if result.skipped:
        parts.append(f"{result.skipped} empty entries")
    parts.extend(result.notes)
    return "; ".join(parts)


def _result_row(result: Any) -> dict[str, Any]:
    return {
        "feed": result.feed,
        "status": result.status,
        "http": result.http_status,
        "new": result.new,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "seconds": round(result.duration, 2),
        "detail": _detail(result),
    }


def _result_json(result: Any) -> dict[str, Any]:
    return {
        "feed": result.feed,
        "status": result.status,
        "http_status": result.http_status,
        "new": result.new,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "entries": result.entries,
        "duplicates": result.duplicates,
        "skipped": result.skipped,
        "error": result.error,
        "reason": result.reason,
        "url": result.url,
        "moved_to": result.moved_to,
        "encoding": result.encoding,
        "duration": round(result.duration, 3),
        "next_poll_at": isoformat(result.next_poll_at),
        "notes": result.notes,
    }


# ============================================================================= monitor collect


@click.command("collect")
@click.option(
    "--feed",
    "feed_names",
    multiple=True,
    metavar="NAME",
    help="Only this feed (repeatable). Default: every enabled feed.",
)
@format_option(("table", "json"))
@click.pass_obj
@handle_errors
def collect_command(app: App, feed_names: tuple[str, ...], output_format: str) -> None:
    """One pass now: fetch, score, store, evaluate rules, deliver notifications.

    Prints one line per feed. Exits 0 when the pass ran, even if some feeds failed (they are listed
    with their error); non-zero only when nothing could run (bad config, unknown feed, database down).
    """
    settings = app.settings
    for name in feed_names:
        settings.feed(name)  # ConfigError naming the known feeds
    engine = app.engine(migrate=True)
    from monitor.classify.backend import ModelError
    from monitor.pipeline import Pipeline

    try:
        pipeline = Pipeline(settings, engine)
    except ModelError as exc:
        raise click.ClickException(f"cannot load the sentiment model: {exc}") from None
    try:
        report = pipeline.run_pass(list(feed_names) or None)
    finally:
        pipeline.collector.close()
    results = report.feeds
    failed = sum(1 for r in results if r.status == "error")
    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "feeds": [_result_json(r) for r in results],
                    "new": report.new_articles,
                    "updated": report.updated_articles,
                    "failed_feeds": failed,
                    "scored": report.scored,
                    "alert_events": len(report.alert_events),
                    "delivered": report.delivered,
                    "failed_deliveries": report.failed_deliveries,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    if not results:
        click.echo("no enabled feeds in the configuration: nothing to collect")
        return
    emit([_result_row(r) for r in results], "table", SUMMARY_COLUMNS)
    sent = f"{report.delivered} notifications sent"
    if report.failed_deliveries:
        sent += f", {report.failed_deliveries} failed"
    click.echo(
        f"\n{len(results)} feeds ({failed} failed): {report.new_articles} new, "
        f"{report.updated_articles} updated; {report.scored} scored; "
        f"{len(report.alert_events)} alert events; {sent}"
    )


# ============================================================================= monitor feeds


@click.group("feeds")
def feeds_group() -> None:
    """Configured feeds: check them, list their state, import OPML."""


@feeds_group.command("check")
@click.option("--feed", "feed_names", multiple=True, metavar="NAME", help="Only this feed (repeatable).")
@format_option(("table", "json"))
@click.pass_obj
@handle_errors
def feeds_check(app: App, feed_names: tuple[str, ...], output_format: str) -> None:
    """Fetch every configured feed once and print its status; stores nothing, needs no database.

    Exit status 1 when any feed failed, so it can gate a config change.
    """
    settings = app.settings
    feeds = [settings.feed(name) for name in feed_names] if feed_names else list(settings.feeds)
    from monitor.collect import Collector

    collector = Collector(settings, None)
    try:
        results = collector.check_many(feeds)
    finally:
        collector.close()
    if output_format == "json":
        click.echo(json.dumps([_result_json(r) for r in results], ensure_ascii=False, indent=2))
    else:
        rows = [
            {
                "feed": r.feed,
                "status": r.status,
                "http": r.http_status,
                "entries": r.entries,
                "encoding": r.encoding,
                "seconds": round(r.duration, 2),
                "detail": _detail(r),
            }
            for r in results
        ]
        emit(rows, "table", ["feed", "status", "http", "entries", "encoding", "seconds", "detail"])
        bad = sum(1 for r in results if r.status == "error")
        click.echo(f"\n{len(results)} feeds checked: {len(results) - bad} ok, {bad} failed")
    if any(r.status == "error" for r in results):
        sys.exit(1)


@feeds_group.command("list")
@format_option()
@click.pass_obj
@handle_errors
def feeds_list(app: App, output_format: str) -> None:
    """Configured feeds with what polling recorded: last status, errors, backoff, next poll."""
    from monitor.store.feeds import list_feeds

    settings = app.settings
    states = {state.name: state for state in list_feeds(app.engine(migrate=True))}
    rows = []
    for feed in settings.feeds:
        state = states.get(feed.name)
        rows.append(
            {
                "feed": feed.name,
                "enabled": feed.enabled,
                "every": _format_every(feed.every),
                "url": (state.fetch_url if state else feed.url),
                "last_status": state.last_status if state else None,
                "http": state.last_http_status if state else None,
                "last_polled_at": state.last_polled_at if state else None,
                "errors": state.consecutive_errors if state else 0,
                "next_poll_at": state.next_poll_at if state else None,
                "last_error": state.last_error if state else None,
            }
        )
    emit(
        rows,
        output_format,
        [
            "feed",
            "enabled",
            "every",
            "last_status",
            "http",
            "last_polled_at",
            "errors",
            "next_poll_at",
            "last_error",
            "url",
        ],
    )


def _format_every(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@feeds_group.command("import-opml")
@click.argument("opml_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--every", default="30m", show_default=True, help="Polling interval for the imported feeds.")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the YAML entries instead of writing them into the config file.",
)
@click.pass_obj
@handle_errors
def feeds_import_opml(app: App, opml_file: Path, every: str, print_only: bool) -> None:
    """Add the subscriptions of an OPML file (a feed reader's export) to the config file.

    The entries are appended to the `feeds:` list of the config file in place (comments and layout
    kept), named after their titles, skipping URLs already configured; the edited file is validated
    before it replaces the old one. With --print the entries are printed to paste by hand instead.
    """
    from monitor.collect.opml import OpmlError, insert_feeds, plan_import, write_config, yaml_items

    try:
        interval = parse_duration(every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    settings = app.settings
    config_path = app.config_path or default_config_path()
    try:
        plan = plan_import(opml_file, settings)
        items = yaml_items(plan.feeds, interval)
        skipped = []
        if plan.already:
            skipped.append(f"{len(plan.already)} already configured")
        if plan.duplicates:
            skipped.append(f"{plan.duplicates} repeated")
        if plan.invalid:
            skipped.append(f"{len(plan.invalid)} not http(s): {', '.join(plan.invalid[:3])}")
        note = f" (skipped {'; '.join(skipped)})" if skipped else ""
        if print_only:
            click.echo("feeds:" if items else "# nothing new to add")
            for line in items:
                click.echo(line)
            click.echo(f"# {len(items)} feeds from {opml_file}{note}", err=True)
            return
        if not items:
            click.echo(f"nothing to add from {opml_file}{note}")
            return
        text = config_path.read_text(encoding="utf-8")
        write_config(config_path, insert_feeds(text, items))
    except OpmlError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {len(items)} feeds to {config_path}{note}")
    for feed in plan.feeds:
        click.echo(f"  {feed.name}: {feed.url}")


# ============================================================================= monitor articles

ARTICLE_COLUMNS = ["id", "happened_at", "feed", "language", "label", "score", "title"]
CSV_COLUMNS = [
    "id",
    "title",
    "url",
    "feed",
    "source",
    "language",
    "published_at",
    "collected_at",
    "happened_at",
    "label",
    "score",
    "confidence",
    "topics",
]


@click.command("articles")
@click.option(
    "--topic", "topics", multiple=True, metavar="TOPIC", help="Only articles about this topic (repeatable)."
)
@click.option("--since", default=None, help="Start: a duration back from now (24h, 7d) or an ISO 8601 time.")
@click.option("--until", default=None, help="End (exclusive): a duration back from now or an ISO 8601 time.")
@click.option("--search", default=None, help="Words that must all appear in the title or summary.")
@click.option("--feed", "feeds", multiple=True, metavar="NAME", help="Only this feed (repeatable).")
@click.option("--language", default=None, help="Only this language (en, zh, ...).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@format_option()
@click.pass_obj
@handle_errors
@_param_errors
def articles_command(
    app: App,
    topics: tuple[str, ...],
    since: str | None,
    until: str | None,
    search: str | None,
    feeds: tuple[str, ...],
    language: str | None,
    limit: int,
    output_format: str,
) -> None:
    """Stored articles, newest first, with their sentiment when scored.

    --since/--until filter on the published time, or the collection time for entries without a date.
    """
    from monitor.store.articles import ArticleFilter, list_articles

    settings = app.settings
    start, end = time_range(since, until, default_since=None)
    chosen = check_topics(topics, list(settings.topics)) if topics else []
    for name in feeds:
        settings.feed(name)
    rows = list_articles(
        app.engine(migrate=True),
        ArticleFilter(
            topics=tuple(chosen),
            since=start,
            until=end if until else None,
            search=search,
            feeds=feeds,
            language=language,
            limit=limit,
        ),
    )
    data = [row.as_dict() for row in rows]
    if output_format == "csv":
        for item in data:
            item["topics"] = ";".join(t["topic"] for t in item["topics"])
        emit(data, "csv", CSV_COLUMNS)
    elif output_format == "json":
        emit(data, "json", [])
    else:
        emit(data, "table", ARTICLE_COLUMNS)


def register(cli: click.Group) -> None:
    cli.add_command(collect_command)
    cli.add_command(feeds_group)
    cli.add_command(articles_command)
