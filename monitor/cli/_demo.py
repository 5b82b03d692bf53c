"""`monitor demo`: see everything work offline in one command (recorded feeds -> alerts -> dashboard)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from monitor.cli._common import emit

FEED_COLUMNS = ["feed", "status", "new", "updated", "error"]
ALERT_COLUMNS = ["rule", "topic", "state", "fired_at", "resolved_at", "value", "threshold", "articles"]
STORY_COLUMNS = ["id", "sources", "articles", "languages", "headline"]


@click.command("demo")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("data/demo.db"),
    show_default=True,
    help="SQLite file for the demo (recreated on every run).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Dashboard port."
)
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the dashboard afterwards.")
def demo_command(db_path: Path, host: str, port: int, serve: bool) -> None:
    """Run the whole pipeline offline on recorded feeds, print the alerts it raised, serve the dashboard.

    A local server on 127.0.0.1 plays back a few days of recorded English and Chinese headlines about
    Nvidia, Google TPUs, custom AI chips and AI-bubble talk (dates moved up to the present). They are
    collected, scored by the real model and stored in a fresh SQLite database; the alert rules are
    evaluated every 15 minutes across those days. The demo uses its own configuration
    (monitor/demo/demo.yaml), not --config; alerts go to the console unless SLACK_* is set.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from monitor.demo.runner import fresh_sqlite, run_demo
    from monitor.demo.server import ANCHOR, DemoFeedServer
    from monitor.logs import setup_logging

    setup_logging(os.environ.get("MONITOR_LOG_LEVEL", "WARNING"), "text")
    if serve:
        _check_port_free(host, port)
    from monitor.classify.backend import ModelError
    from monitor.config import ConfigError
    from monitor.store.db import DatabaseError

    try:
        database_url = fresh_sqlite(db_path)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    overrides = {"http": {"host": host, "port": port}}

    with DemoFeedServer() as server:
        click.echo(
            f"Recorded feeds (captured {ANCHOR:%Y-%m-%d}, dates moved up to now) served at {server.base_url}"
        )
        click.echo("Loading the sentiment model and running the pipeline ...")
        try:
            report = run_demo(database_url, server=server, overrides=overrides)
        except (ModelError, ConfigError, DatabaseError) as exc:
            raise click.ClickException(str(exc)) from None

    click.echo("\nFeeds:")
    emit(
        [
            {"feed": r.feed, "status": r.status, "new": r.new, "updated": r.updated, "error": r.error or ""}
            for r in report.feeds
        ],
        "table",
        FEED_COLUMNS,
    )
    click.echo(
        f"\nStored and scored {report.scored} articles; evaluated the alert rules at "
        f"{report.evaluations} moments "
        f"(every 15 minutes across the recorded days); {report.delivered} notifications delivered "
        f"({report.settings.slack.mode}). Took {report.seconds:.1f}s."
    )
    click.echo("\nAlerts raised:")
    emit([e.as_row() for e in report.episodes], "table", ALERT_COLUMNS)
    click.echo("\nStories carried by the most sources (syndicated copies and translations of one event):")
    emit(_top_stories(report.engine), "table", STORY_COLUMNS)
    click.echo(f"\nDatabase: {db_path}. Query it, e.g.:")
    click.echo(
        f"  MONITOR_DATABASE_URL=sqlite:///{db_path} monitor history --topic nvidia --since 4d --bucket 6h"
    )
    click.echo(f"  MONITOR_DATABASE_URL=sqlite:///{db_path} monitor stories --since 4d --sort sources")
    if not serve:
        return
    _serve(report, host, port)


def _top_stories(engine, limit: int = 5) -> list[dict]:  # noqa: ANN001
    """The demo's stories with the most sources: where the copies of one wire story went."""
    from monitor.store.stories import StoryFilter, list_stories

    rows = list_stories(engine, StoryFilter(order="sources", limit=limit))
    return [
        {
            "id": row.id,
            "sources": row.sources,
            "articles": row.articles,
            "languages": ",".join(row.languages),
            "headline": row.headline,
        }
        for row in rows
        if row.sources > 1
    ]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.BadParameter(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or use --no-serve",
                param_hint="--port",
            ) from None


def _serve(report, host: str, port: int) -> None:  # noqa: ANN001
    import uvicorn

    from monitor.api import create_app
    from monitor.status import RuntimeStatus

    status = RuntimeStatus(model_expected=False)
    app = create_app(report.settings, report.engine, status)
    click.echo(f"\nDashboard: http://{host}:{port}/   (API docs: http://{host}:{port}/docs; Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(cli: click.Group) -> None:
    cli.add_command(demo_command)
