"""`monitor alerts` (history, why one fired, redelivery) and `monitor rules` (list, replay history)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.cli._common import (
    App,
    emit,
    format_option,
    handle_errors,
    since_option,
    time_range,
    until_option,
)
from monitor.timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from monitor.store.outbox import FailedNotification

ALERT_COLUMNS = (
    "id",
    "rule",
    "topic",
    "state",
    "started_at",
    "fired_at",
    "resolved_at",
    "value",
    "threshold",
    "stories",
    "articles",
    "sources",
    "reminders",
    "notification",
    "notification_error",
    "reason",
)
REDELIVER_COLUMNS = ("id", "rule", "topic", "receiver", "kind", "at", "action", "error")
REPLAY_COLUMNS = (
    "at",
    "rule",
    "topic",
    "event",
    "value",
    "threshold",
    "stories",
    "articles",
    "sources",
    "reason",
)
RULE_COLUMNS = (
    "name",
    "topic",
    "metric",
    "condition",
    "clear",
    "window",
    "baseline",
    "count",
    "min_articles",
    "min_sources",
    "for",
    "repeat",
    "severity",
    "enabled",
)


@click.group("alerts", invoke_without_command=True)
@since_option("7d")
@until_option()
@click.option(
    "--state",
    type=click.Choice(["pending", "firing", "resolved", "cancelled"]),
    default=None,
    help="Only episodes in this state (default: all but cancelled pending periods).",
)
@format_option()
@click.pass_context
@handle_errors
def alerts(ctx: click.Context, since: str, until: str | None, state: str | None, output_format: str) -> None:
    """Alert history: one row per episode (pending -> firing -> resolved), newest last.

    Episodes still open are shown even when they began before --since. `id` is the episode's fired event
    (its first event while pending): `monitor alerts show ID` explains it. `stories`, `articles` and
    `sources` are what its window held when it fired.
    """
    if ctx.invoked_subcommand is not None:
        return
    from monitor.alerts.explain import episode_evidence
    from monitor.store.alerts import episodes

    app: App = ctx.obj
    start, end = time_range(since, until)
    with Session(app.engine()) as session:
        rows = episodes(session, since=start, until=end)
        if state is None:
            rows = [e for e in rows if e.state != "cancelled"]
        else:
            rows = [e for e in rows if e.state == state]
        evidence = episode_evidence(session, rows)
    columns = ALERT_COLUMNS + (("fingerprint",) if output_format != "table" else ())
    emit([{**e.as_row(), **ev} for e, ev in zip(rows, evidence, strict=True)], output_format, columns)


@alerts.command("show")
@click.argument("event_id", metavar="ID", type=int)
@format_option(("table", "json"))
@click.pass_obj
@handle_errors
def show(app: App, event_id: int, output_format: str) -> None:
    """Why an alert fired (or reminded, or resolved): value against threshold and clear level, the window's
    stories, sources and articles, the baseline, the top stories, and what changed since the last notice.

    ID is the `id` column of `monitor alerts` (any event id of the alert's history works).
    """
    from monitor.alerts.explain import describe_event

    with Session(app.engine()) as session:
        described = describe_event(session, event_id, app.settings.alerts)
    if described is None:
        raise click.BadParameter(f"no alert event {event_id} (see the id column of `monitor alerts`)")
    if output_format == "json":
        click.echo(json.dumps(described, ensure_ascii=False, indent=2))
        return
    for line in _show_lines(described):
        click.echo(line)


def _show_lines(d: dict[str, Any]) -> list[str]:
    """The explanation as the console message shows it, then the episode and its notification."""
    from monitor.notify.message import render_console
    from monitor.textsafe import strip_bidi

    lines = [f"Alert event {d['id']}: {d['kind']} at {d['at']}", ""]
    lines += render_console(d["explanation"]).splitlines()
    if d["episode"]:
        steps = " → ".join(f"{e['kind']} {e['at']} (#{e['id']})" for e in d["episode"])
        lines += ["", f"Episode: {steps}"]
    silenced = d["explanation"].get("silenced_by")
    if silenced is not None:  # recorded, held back by a silence (monitor silence list --all)
        lines.append(f"Silenced by silence {silenced}: recorded, not sent")
    notes = d.get("notifications") or ([d["notification"]] if d["notification"] else [])
    for note in notes:  # one per receiver; `default` alone reads as before receivers existed
        receiver = note.get("receiver") or "default"
        named = f" ({receiver})" if receiver != "default" else ""
        status = f"Notification {note['id']}{named}: {note['status']}"
        if note["delivered_via"]:
            status += f" via {note['delivered_via']} at {note['delivered_at']}"
        if note["error"]:
            status += f" — {note['error']}"
        lines.append(status)
    lines.append(f"Alert: {d['fingerprint']}")
    return [strip_bidi(line) for line in lines]


@alerts.command("redeliver")
@click.option(
    "--id", "ids", type=int, multiple=True, help="Only this notification (repeatable; see --dry-run)."
)
@click.option("--rule", "rule_names", multiple=True, help="Only notifications of this rule (repeatable).")
@since_option(None)
@click.option(
    "--history",
    is_flag=True,
    help="Also send notifications that later transitions of their alert superseded, marked as history.",
)
@click.option("--dry-run", is_flag=True, help="List what would be queued and skipped; change nothing.")
@click.pass_obj
@handle_errors
def redeliver(
    app: App,
    ids: tuple[int, ...],
    rule_names: tuple[str, ...],
    since: str | None,
    history: bool,
    dry_run: bool,
) -> None:
    """Queue failed notifications again (after fixing the Slack settings); `run`/`collect` send them.

    A failed notification that a later transition of its alert superseded (a `fired` whose alert has
    resolved since, a resolved notice followed by a new episode) would post the past as the present: it is
    skipped, or with --history sent marked as history. Each notification considered is listed.
    """
    from monitor.store import outbox

    engine = app.engine()
    _check_rules(app, rule_names)
    start, _ = time_range(since, None)
    rows = outbox.failed(engine, ids=ids, rules=rule_names, since=start)
    _check_ids(engine, ids, rows)
    queued = set() if dry_run else set(outbox.requeue(engine, rows, utcnow(), history=history))
    emit([_redelivery_row(row, history, dry_run, queued) for row in rows], "table", REDELIVER_COLUMNS)
    sent = [row for row in rows if row.current or history]
    skipped = len(rows) - len(sent)
    if dry_run:
        click.echo(f"dry run: {len(sent)} failed notification(s) would be queued again")
    else:
        click.echo(f"{len(queued)} failed notification(s) queued again")
    if skipped:
        click.echo(
            f"{skipped} skipped: later transitions superseded them (--history sends them marked as history)"
        )


def _check_rules(app: App, names: tuple[str, ...]) -> None:
    """Configured rules, and rules that left the configuration but have stored alerts."""
    from monitor.store.alerts import rule_names

    if not names:
        return
    known = {r.name for r in app.settings.alerts} | rule_names(app.engine())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown rule(s): {', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none'})",
            param_hint="--rule",
        )


def _check_ids(engine: Engine, ids: tuple[int, ...], rows: list[FailedNotification]) -> None:
    """Each --id must name a failed notification (of the other filters): say what it is instead."""
    from monitor.store import outbox

    found = {row.id for row in rows}
    for notification_id in ids:
        if notification_id in found:
            continue
        row = outbox.get(engine, notification_id)
        if row is None:
            raise click.BadParameter(f"no notification {notification_id}", param_hint="--id")
        if row.status != "failed":
            raise click.BadParameter(
                f"notification {notification_id} is {row.status}, not failed", param_hint="--id"
            )
        raise click.BadParameter(
            f"notification {notification_id} does not match --rule/--since", param_hint="--id"
        )


def _redelivery_row(
    row: FailedNotification, history: bool, dry_run: bool, queued: set[int]
) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule,
        "topic": row.topic,
        "receiver": row.receiver,
        "kind": row.kind,
        "at": row.created_at,
        "action": _action(row, history, dry_run, queued),
        "error": row.error,
    }


def _action(row: FailedNotification, history: bool, dry_run: bool, queued: set[int]) -> str:
    if not row.current and not history:
        return f"skipped: superseded by {row.superseded_by} of {isoformat(row.superseded_at)}"
    if not dry_run and row.id not in queued:
        return "not queued: changed meanwhile"
    return ("would queue" if dry_run else "queued") + ("" if row.current else " as history")


@click.group("rules")
def rules() -> None:
    """Alert rules: list them, or replay stored history through them."""


@rules.command("list")
@format_option()
@click.pass_obj
@handle_errors
def rules_list(app: App, output_format: str) -> None:
    """The configured rules."""
    from monitor.alerts.metrics import METRICS
    from monitor.notify.message import format_duration

    def duration(value: timedelta | None) -> str | None:
        return format_duration(value.total_seconds()) if value else None

    rows = [
        {
            "name": r.name,
            "topic": r.topic,
            "metric": r.metric,
            "condition": f"{r.direction} {r.threshold:g}",
            "clear": r.clear,
            "window": duration(r.window),
            "baseline": duration(r.baseline) if METRICS[r.metric].needs_baseline else None,
            "count": r.count,
            "min_articles": r.min_articles,
            "min_sources": r.min_sources,
            "for": duration(r.for_) or "0s",
            "repeat": duration(r.repeat),
            "severity": r.severity,
            "enabled": r.enabled,
        }
        for r in app.settings.alerts
    ]
    emit(rows, output_format, RULE_COLUMNS)


@rules.command("test")
@since_option("30d")
@until_option()
@click.option(
    "--rule", "rule_names", multiple=True, help="Only this rule (repeatable; disabled rules allowed)."
)
@click.option("--all-events", is_flag=True, help="Also show pending and cancelled transitions.")
@format_option()
@click.pass_obj
@handle_errors
def rules_test(
    app: App, since: str, until: str | None, rule_names: tuple[str, ...], all_events: bool, output_format: str
) -> None:
    """Replay stored history through the rules: when each would have fired and resolved. Sends nothing.

    Tune thresholds with this before enabling a rule. Nothing is written to the database.
    """
    from monitor.alerts.replay import replay

    settings = app.settings
    known = {r.name for r in settings.alerts}
    unknown = [name for name in rule_names if name not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown rule(s): {', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none configured'})",
            param_hint="--rule",
        )
    start, end = time_range(since, until)
    assert start is not None
    end = end or utcnow()
    try:
        events = replay(settings, app.engine(), start, end, list(rule_names) or None)
    except OverflowError:  # a window or baseline before `since` reaches before year 1
        raise click.BadParameter(f"{since!r} reaches too far back", param_hint="--since") from None
    shown = [e for e in events if all_events or e.kind in ("fired", "reminder", "resolved")]
    emit([e.as_row() for e in shown], output_format, REPLAY_COLUMNS)
    if output_format == "table":
        click.echo("")
        for line in _summary(events, end):
            click.echo(line)


def _summary(events: list, end: datetime) -> list[str]:
    """Per rule: how often it fired and how long it was firing in total."""
    lines = []
    by_rule: dict[str, list] = {}
    for event in events:
        by_rule.setdefault(event.rule, []).append(event)
    for rule, items in sorted(by_rule.items()):
        fired = [e for e in items if e.kind == "fired"]
        total = 0.0
        opened = None
        for e in items:
            if e.kind == "fired":
                opened = e.at
            elif e.kind == "resolved" and opened is not None:
                total += (e.at - opened).total_seconds()
                opened = None
        still = opened is not None
        if still:
            total += (end - opened).total_seconds()
        firing = _human(total)
        lines.append(
            f"{rule}: fired {len(fired)} time(s), firing {firing} in total"
            + (", still firing at the end" if still else "")
        )
    return lines or ["no rule would have fired"]


def _human(seconds: float) -> str:
    """`2d 3h`, `6h 5m`, `45m`."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    return " ".join(parts) or "0m"


def register(cli: click.Group) -> None:
    cli.add_command(alerts)
    cli.add_command(rules)
