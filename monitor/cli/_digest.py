"""`monitor digest`: print the periodic summary now, or queue it for delivery (`--send`)."""

from __future__ import annotations

import json

import click

from monitor.cli._common import App, format_option, handle_errors
from monitor.cli._query import param_errors
from monitor.params import check_topics, time_range


@click.command("digest")
@click.option(
    "--since",
    default=None,
    help="Start of the period: a duration back from now (24h, 7d) or an ISO 8601 date/time "
    "[default: the configured period, 24h or 7d]. It is compared with the same length before it.",
)
@click.option(
    "--topic", "topics", multiple=True, metavar="TOPIC", help="Topic (repeatable; default: the digest's)."
)
@format_option(("text", "json"))
@click.option(
    "--send", is_flag=True, help="Queue it for delivery now (to the digest's receivers) and deliver."
)
@click.pass_obj
@handle_errors
@param_errors
def digest(app: App, since: str | None, topics: tuple[str, ...], output_format: str, send: bool) -> None:
    """The digest: per topic, stories and sentiment against the period before, top stories, alerts.

    Printed by default; with --send it is also queued for delivery like an alert and delivered now
    (what `monitor run` does once per period at `digest.at`).
    """
    from monitor.digest import DigestSender, render_text
    from monitor.timeutil import utcnow

    sender = DigestSender(app.settings, app.engine())
    chosen = check_topics(topics, list(app.settings.topics)) if topics else sender.topics
    now = utcnow()
    start, _end = time_range(since, None, default_since=None, now=now)
    content = sender.build(sender.period_since(start, now), topics=chosen)
    if output_format == "json":
        click.echo(json.dumps(content.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(render_text(content))
    if send:
        from monitor.notify import Deliverer
        from monitor.notify.message import plural

        ids = sender.send_now(content, now)
        settings = app.settings
        report = Deliverer(settings, app.engine()).deliver_due(
            wait=settings.notify.collect_wait.total_seconds()
        )
        click.echo(
            f"digest queued ({plural(len(ids), 'notification')}); "
            f"{plural(report.delivered, 'notification')} delivered via {settings.slack.mode}"
            + (f", {report.failed} failed" if report.failed else "")
            + (f", {report.retried} to retry" if report.retried else ""),
            err=True,
        )


def register(cli: click.Group) -> None:
    cli.add_command(digest)
