"""The `monitor` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from monitor import __version__
from monitor.cli._common import App

log = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default: $MONITOR_CONFIG, else config/monitor.yaml).",
)
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """News and sentiment monitor for the AI-chip market."""
    ctx.obj = App(config_path)


def _register() -> None:
    from monitor.cli import _db

    cli.add_command(_db.db)
    # Optional areas: each module defines `register(cli)`.
    import importlib

    for name in (
        "_collect",
        "_classify",
        "_alerts",
        "_query",
        "_stories",
        "_run",
        "_worker",
        "_demo",
        "_digest",
        "_silences",
    ):
        try:
            module = importlib.import_module(f"monitor.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"monitor.cli.{name}":
                raise
            continue
        module.register(cli)


_register()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
