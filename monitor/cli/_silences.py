"""`monitor silence add | list | expire`: quiet alerts people already know about (Alertmanager's silences).

A silence is stored in the database, so the running `monitor run` (every replica) applies it at its next
rule evaluation; expiring one that held back a firing alert's notice sends that notice then, once.
"""

from __future__ import annotations

import functools
import getpass
import json
from collections.abc import Callable
from typing import Any

import click

from monitor.cli._common import App, emit, format_option, handle_errors
from monitor.store.silences import SEVERITIES, SilenceError

SILENCE_COLUMNS = (
    "id",
    "state",
    "rule",
    "topic",
    "severity",
    "starts_at",
    "ends_at",
    "reason",
    "created_by",
)
# The CLI's name for each input a SilenceError can name.
OPTIONS = {
    "matchers": "--rule / --topic / --severity",
    "rule": "--rule",
    "topic": "--topic",
    "severity": "--severity",
    "starts_at": "--start",
    "ends_at": "--for / --until",
    "duration": "--for",
    "reason": "--reason",
    "created_by": "--by",
    "id": "ID",
}


def silence_errors(func: Callable) -> Callable:
    """A SilenceError becomes a usage error naming the option, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SilenceError as exc:
            raise click.BadParameter(exc.message, param_hint=OPTIONS.get(exc.field, exc.field)) from None

    return wrapper


@click.group("silence")
def silence() -> None:
    """Silences: while one is active, the alerts it matches are recorded but not sent.

    Matching is by rule, topic and severity (at least one; each exact). When a silence ends while an
    alert it held back is still firing, that alert's notice goes out then, once.
    """


@silence.command("add")
@click.option("--rule", default=None, help="Rule name (e.g. nvidia-sentiment-drop, or feed-health).")
@click.option("--topic", default=None, help="Topic (a configured topic, or a feed's name for feed-health).")
@click.option("--severity", type=click.Choice(list(SEVERITIES)), default=None, help="Severity.")
@click.option("--for", "duration", default=None, help="How long, from the start: 30m, 2h, 3d.")
@click.option("--until", default=None, help="The end: an ISO 8601 date/time (UTC unless it says).")
@click.option("--start", default=None, help="The start: an ISO 8601 date/time [default: now].")
@click.option("--reason", required=True, help="Why (shown in `silence list` and stored with it).")
@click.option("--by", "created_by", default=None, help="Who silences it [default: the current user].")
@format_option(("table", "json"))
@click.pass_obj
@handle_errors
@silence_errors
def add(
    app: App,
    rule: str | None,
    topic: str | None,
    severity: str | None,
    duration: str | None,
    until: str | None,
    start: str | None,
    reason: str,
    created_by: str | None,
    output_format: str,
) -> None:
    """Add a silence: `--rule R [--topic T] [--severity S] (--for 2h | --until TIME) --reason TEXT`."""
    from monitor.alerts.silencing import new_silence
    from monitor.store.silences import Matchers, as_dict
    from monitor.timeutil import utcnow

    now = utcnow()
    row = new_silence(
        app.settings,
        app.engine(),
        Matchers(rule, topic, severity),
        reason=reason,
        created_by=created_by if created_by is not None else _user(),
        now=now,
        start=start,
        duration=duration,
        until=until,
    )
    shown = as_dict(row, now)
    if output_format == "json":
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    emit([shown], "table", SILENCE_COLUMNS)
    click.echo(f"silence {row.id} added; `monitor silence expire {row.id}` ends it early", err=True)


@silence.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Also silences that have ended.")
@format_option(("table", "json"))
@click.pass_obj
@handle_errors
def list_command(app: App, include_ended: bool, output_format: str) -> None:
    """Active and pending silences (with --all also ended ones), newest first."""
    from monitor.store.silences import as_dict, list_silences
    from monitor.timeutil import utcnow

    now = utcnow()
    rows = [as_dict(s, now) for s in list_silences(app.engine(), now, include_ended=include_ended)]
    columns = SILENCE_COLUMNS + (("created_at", "expired_at") if output_format == "json" else ())
    emit(rows, output_format, columns)


@silence.command("expire")
@click.argument("silence_id", metavar="ID", type=int)
@click.pass_obj
@handle_errors
@silence_errors
def expire(app: App, silence_id: int) -> None:
    """End a silence now. An alert it held back that still fires is notified at the next evaluation."""
    from monitor.store.silences import expire as expire_silence
    from monitor.timeutil import isoformat, utcnow

    row = expire_silence(app.engine(), silence_id, utcnow())
    click.echo(f"silence {row.id} expired at {isoformat(row.ends_at)}")


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container with an unnamed uid)
        return None


def register(cli: click.Group) -> None:
    cli.add_command(silence)
