"""`monitor stories`: stories (one event, however many copies) from the terminal; `show` one, `rebuild` them.

A story gathers the syndicated copies, edited headlines and translations of one event, so a listing shows
each event once with how many sources carried it, instead of the same headline twenty times.
"""

from __future__ import annotations

import time
from typing import Any

import click

from monitor.cli._common import App, emit, format_option, handle_errors, since_option, until_option
from monitor.cli._query import param_errors
from monitor.params import check_search, check_topics, time_range
from monitor.store.stories import (
    STORY_SORTS,
    StoryFilter,
    check_story_sort,
    count_stories,
    get_story,
    list_stories,
    story_dicts,
)

STORY_COLUMNS = ["id", "first_seen", "articles", "sources", "languages", "sentiment", "headline"]
CSV_COLUMNS = [
    "id",
    "headline",
    "url",
    "first_seen",
    "last_seen",
    "articles",
    "sources",
    "languages",
    "source_names",
    "topics",
]
MEMBER_COLUMNS = ["id", "happened_at", "source", "language", "novel", "basis", "similarity", "title"]
MEMBER_CSV_COLUMNS = [*MEMBER_COLUMNS[:-1], "title", "url"]


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _sentiment_cell(item: dict[str, Any], topic: str | None) -> str:
    """The chosen topic's vote, or every topic's, e.g. `nvidia -0.62 negative; tpu +0.50 positive`."""
    votes = [t for t in item["topics"] if topic is None or t["topic"] == topic]
    return "; ".join(f"{t['topic']} {_signed(t['sentiment'])} {t['label']}" for t in votes)


def _flat(item: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: lists joined, each topic as `topic:sentiment:label`."""
    return {
        **item,
        "languages": ",".join(item["languages"]),
        "source_names": ";".join(item["source_names"]),
        "topics": ";".join(f"{t['topic']}:{t['sentiment']:.4f}:{t['label']}" for t in item["topics"]),
    }


@click.group("stories", invoke_without_command=True)
@click.option("--topic", default=None, metavar="TOPIC", help="Only stories about this topic.")
@since_option("24h")
@until_option()
@click.option("--search", default=None, help="Text in the headline of the story or of one of its articles.")
@click.option(
    "--sort",
    type=click.Choice(list(STORY_SORTS)),
    default="recent",
    show_default=True,
    help="recent: newest first; sources: most sources first; most_negative/most_positive: by the "
    "sentiment toward --topic.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@format_option()
@click.pass_context
@handle_errors
@param_errors
def stories(
    ctx: click.Context,
    topic: str | None,
    since: str,
    until: str | None,
    search: str | None,
    sort: str,
    limit: int,
    output_format: str,
) -> None:
    """Stories: one row per event, with its articles, sources, languages and per-topic sentiment.

    --since/--until filter on when a story was first seen. `monitor stories show ID` lists its articles;
    `monitor stories rebuild` places stored articles in stories again.
    """
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    if topic is not None:
        topic = check_topics([topic], list(app.settings.topics))[0]
    check_story_sort(sort, topic)
    start, end = time_range(since, until)
    flt = StoryFilter(
        topic=topic, since=start, until=end, search=check_search(search), limit=limit, order=sort
    )
    engine = app.engine()
    items = story_dicts(engine, list_stories(engine, flt))
    if output_format == "json":
        emit(items, "json", [])
    elif output_format == "csv":
        emit([_flat(item) for item in items], "csv", CSV_COLUMNS)
    else:
        rows = [
            {**item, "languages": ",".join(item["languages"]), "sentiment": _sentiment_cell(item, topic)}
            for item in items
        ]
        emit(rows, "table", STORY_COLUMNS)


@stories.command("show")
@click.argument("story_id", metavar="ID", type=int)
@format_option()
@click.pass_obj
@handle_errors
def show(app: App, story_id: int, output_format: str) -> None:
    """One story and its articles: source, language, whether it opened the story, and how each joined
    (basis `first`, `text` or `meaning`, with the similarity to the article it matched)."""
    engine = app.engine()
    found = get_story(engine, story_id)
    if found is None:
        raise click.BadParameter(f"no story with id {story_id} (see `monitor stories`)", param_hint="'ID'")
    story, members = found
    item = story_dicts(engine, [story])[0]
    if output_format == "json":
        emit([{**item, "members": members}], "json", [])
    elif output_format == "csv":
        emit(members, "csv", MEMBER_CSV_COLUMNS)
    else:
        click.echo(_summary(item))
        emit(members, "table", MEMBER_COLUMNS)


def _summary(item: dict[str, Any]) -> str:
    lines = [
        f"story {item['id']}: {item['headline']}",
        f"first seen {item['first_seen']}, last seen {item['last_seen']}; {item['articles']} articles from "
        f"{item['sources']} sources ({', '.join(item['source_names'])}); languages "
        f"{', '.join(item['languages']) or '-'}",
    ]
    for t in item["topics"]:
        counts = f"{t['articles']} articles, {t['sources']} sources"
        lines.append(f"  {t['topic']}: {_signed(t['sentiment'])} {t['label']} ({counts})")
    return "\n".join(lines) + "\n"


@stories.command("rebuild")
@since_option(None)
@until_option()
@click.pass_obj
@handle_errors
@param_errors
def rebuild(app: App, since: str | None, until: str | None) -> None:
    """Place stored articles in stories again, oldest first (after an upgrade or a change of `stories:`).

    Articles keep the meaning vectors stored with their placement; articles stored before stories existed
    have none and join by text only until `monitor rescore` gives them one.
    """
    from monitor.stories import StoryStage

    settings = app.settings
    if not settings.stories.enabled:
        raise click.ClickException("stories are disabled (stories.enabled: false in the configuration)")
    start, end = time_range(since, until, default_since=None)
    end = end if until else None
    engine = app.engine()
    started = time.monotonic()

    def progress(done: int) -> None:
        rate = done / max(1e-9, time.monotonic() - started)
        click.echo(f"placed {done} articles ({rate:.0f}/s)", err=True)

    done = StoryStage(settings.stories, engine).rebuild(since=start, until=end, on_page=progress)
    total, multi = count_stories(engine, start, end)
    click.echo(
        f"placed {done} articles in {total} stories ({multi} with more than one article) "
        f"in {time.monotonic() - started:.1f}s"
    )


def register(cli: click.Group) -> None:
    cli.add_command(stories)
