"""`monitor worker [--queues collect,score]`: a task-queue worker (needs MONITOR_BROKER_URL), see queue.py.

SIGTERM or SIGINT: stop consuming, let the messages in progress finish (a scoring batch completes and is
acknowledged), return the prefetched ones to the broker, exit 0 within 10 s. A second signal exits at once;
what was in progress is then redelivered (acknowledgement comes only after processing).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click

from monitor.cli._common import App, handle_errors
from monitor.store.db import create_db_engine

log = logging.getLogger(__name__)

STOP_TIMEOUT = 8.0


def _queues(value: str) -> tuple[str, ...]:
    from monitor.queue import QUEUES

    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in QUEUES]
    if not names or unknown:
        raise click.BadParameter(f"known queues: {', '.join(QUEUES)} (got {value!r})", param_hint="--queues")
    return names


@click.command("worker")
@click.option(
    "--queues",
    "queues_text",
    default="collect,score",
    show_default=True,
    help="Comma-separated queues to consume: collect (feed polls), score (scoring batches).",
)
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True, help="Worker threads.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this worker's Prometheus metrics (task counts, latency) on this port (default: none).",
)
@click.pass_obj
@handle_errors
def worker_command(app: App, queues_text: str, threads: int, metrics_port: int | None) -> None:
    """Process feed polls and scoring batches from the broker until SIGTERM/SIGINT."""
    queues = _queues(queues_text)
    settings = app.settings
    if not settings.queue.broker_url:
        raise click.ClickException(
            "monitor worker needs a broker: set MONITOR_BROKER_URL (e.g. amqp://guest:guest@127.0.0.1:5672/)"
        )
    from monitor.ops import wait_for_database
    from monitor.queue import WorkerRuntime

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(0)
        log.info("signal received, stopping the worker", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine = create_db_engine(settings.database_url)
    if not wait_for_database(engine, stop):
        sys.exit(0)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from monitor import metrics

        start_http_server(metrics_port, addr=settings.http.host, registry=metrics.REGISTRY)
    runtime = WorkerRuntime(settings, engine, queues, threads=threads)
    if stop.is_set():
        sys.exit(0)
    runtime.start()
    click.echo(f"worker consuming {','.join(queues)} with {threads} threads", err=True)
    stop.wait()
    runtime.stop(timeout=STOP_TIMEOUT)
    engine.dispose()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter's teardown of the model (seconds on busy cores)


def register(cli: click.Group) -> None:
    cli.add_command(worker_command)
