"""`monitor run`: the long-lived process - scheduler and HTTP server in one process.

Start-up order: schema upgrade, HTTP server (so /healthz answers while the model loads; /readyz says
"model not loaded" until it has), pipeline (loads the model), scheduler. SIGTERM or SIGINT at any
point: stop scheduling, cancel fetches in flight, stop the HTTP server, exit 0 - within 10 s even when
a job is stuck (jobs still running after the grace period are abandoned; the database transactions
they had open roll back, and the outbox makes sure no notification is lost or sent twice).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

import click
from sqlalchemy.engine import Engine

from monitor.cli._common import App, handle_errors
from monitor.config import Settings
from monitor.ops import check_data_dir
from monitor.status import RuntimeStatus
from monitor.store.db import create_db_engine

log = logging.getLogger(__name__)

EXIT_DEADLINE = 8.0  # seconds from the signal to process exit (the contract is 10 s)
HTTP_START_TIMEOUT = 15.0


class _Interrupted(Exception):
    """Raised from the signal handler while start-up (model loading) is still running."""


class Runner:
    def __init__(
        self, settings: Settings, engine: Engine, *, host: str | None = None, port: int | None = None
    ):
        self.host = host or settings.http.host
        self.port = settings.http.port if port is None else port
        if self.port != settings.http.port:  # --port: the collector refuses feeds that point at it (SSRF)
            settings = settings.model_copy(
                update={"http": settings.http.model_copy(update={"port": self.port})}
            )
        self.settings = settings
        self.engine = engine
        self.stop = threading.Event()
        self.stopped_at: float | None = None
        self._starting = False
        # With a broker, `monitor worker` processes score: this process neither loads nor needs the model.
        self.status = RuntimeStatus(scheduler_expected=True, model_expected=not settings.queue.broker_url)
        self.status.broker_expected = bool(settings.queue.broker_url)
        self.server = None
        self.pipeline = None
        self.scheduler = None
        self.elector = None
        self.dispatch = None

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            log.warning("second signal: exiting now", extra={"signal": name})
            os._exit(0)
        log.info("signal received, shutting down", extra={"signal": name})
        self.stopped_at = time.monotonic()
        self.stop.set()
        if self._starting:
            raise _Interrupted

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # ------------------------------------------------------------------ run

    def _note_stale_scores(self, classifier) -> None:  # noqa: ANN001 - monitor.classify.Classifier
        """After a model upgrade: how much stored history other models scored, and how to bring it over."""
        from monitor.classify.rescore import stale_scores

        try:
            stale = stale_scores(classifier, self.engine)
        except Exception:  # noqa: BLE001 - a note, never a reason not to start
            log.debug("could not count stored scores by model", exc_info=True)
            return
        if stale:
            log.warning(
                "stored articles were scored by other models; `monitor rescore` re-scores them with this one",
                extra={"articles": sum(stale.values()), "models": stale},
            )

    def run(self) -> int:
        """Serve until a signal; the exit code (0 on a clean stop, 1 when start-up failed)."""
        self.install_signals()
        self._starting = True
        try:
            if not self._start_http():
                return 1
            from monitor.classify import Classifier
            from monitor.leader import LeaderElector
            from monitor.ops import wait_for_database
            from monitor.pipeline import Pipeline
            from monitor.scheduler import MonitorScheduler

            # The model first: a missing model file fails at once, naming it, even while the database is down.
            queued = bool(self.settings.queue.broker_url)
            classifier = None if queued else Classifier.from_settings(self.settings)
            # An unreachable database is retried with backoff (logged; /readyz says why) until it answers.
            if not wait_for_database(self.engine, self.stop):
                raise _Interrupted
            self.pipeline = Pipeline(self.settings, self.engine, classifier=classifier, load_model=not queued)
            if classifier is not None:
                self._note_stale_scores(classifier)
            classifier = getattr(self.pipeline, "_classifier", None)
            model = None
            if classifier is not None and hasattr(classifier, "describe"):
                model = ", ".join(m["name"] for m in classifier.describe().get("models", {}).values()) or None
            self.status.mark_model_loaded(model)
            # Leader election (monitor/leader.py): with several replicas on one database only the leader runs
            # the feed, rule, delivery and retention jobs; the others serve HTTP and take over when it dies.
            self.elector = LeaderElector.for_engine(
                self.engine,
                check_every=self.settings.leader.check_every.total_seconds(),
                on_change=self._on_leadership,
            )
            if self.settings.queue.broker_url:  # polls and scoring go to `monitor worker` (monitor/queue.py)
                from monitor.queue import TaskQueue

                self.dispatch = TaskQueue(
                    self.settings.queue.broker_url,
                    score_batch=self.settings.queue.score_batch,
                    prefix=self.settings.queue.prefix,
                )
            self.scheduler = MonitorScheduler(
                self.settings,
                self.engine,
                self.pipeline,
                status=self.status,
                is_leader=lambda: self.elector.is_leader,
                dispatch=self.dispatch,
            )
            self.elector.start()
            self.scheduler.start()
            self._starting = False
            log.info(
                "monitor running",
                extra={"http": f"http://{self.host}:{self.port}", "feeds": len(self.scheduler.feeds)},
            )
        except _Interrupted:
            self._starting = False
            self.shutdown()
            return 0
        except Exception as exc:  # noqa: BLE001 - start-up failed (model, database): say why, exit non-zero
            self._starting = False
            log.exception("start-up failed")
            click.echo(f"Error: start-up failed: {exc}", err=True)
            self.shutdown()
            return 1
        while not self.stop.wait(1.0):
            if self._http_thread is not None and not self._http_thread.is_alive():
                log.error("HTTP server stopped unexpectedly; shutting down")
                self.shutdown()
                return 1
        self.shutdown()
        return 0

    def _on_leadership(self, leader: bool) -> None:
        self.status.set_leader(leader)
        if self.scheduler is not None:
            self.scheduler.on_leadership(leader)

    def _start_http(self) -> bool:
        import uvicorn

        try:
            from monitor.api import create_app
        except ImportError as exc:  # pragma: no cover - the api package is part of the project
            log.error("HTTP API unavailable", extra={"error": str(exc)})
            return False
        app = create_app(self.settings, self.engine, self.status)
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)
        # In a non-main thread uvicorn installs no signal handlers: SIGTERM/SIGINT stay ours.
        self._http_thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + HTTP_START_TIMEOUT
        while not self.server.started:
            if not self._http_thread.is_alive():
                click.echo(
                    f"Error: the HTTP server could not listen on {self.host}:{self.port} "
                    "(port in use or not allowed; set MONITOR_HTTP_PORT or http.port)",
                    err=True,
                )
                return False
            if time.monotonic() > deadline:
                click.echo("Error: the HTTP server did not start in time", err=True)
                return False
            time.sleep(0.05)
        log.info("HTTP server listening", extra={"url": f"http://{self.host}:{self.port}"})
        return True

    _http_thread: threading.Thread | None = None

    def shutdown(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.pipeline is not None:
            self.pipeline.collector.close()  # fetches in flight end within a fraction of a second
        if self.server is not None:
            self.server.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(timeout=max(0.5, self._remaining() - 2))
        self._wait_for_jobs()
        if self.elector is not None:
            self.elector.stop()  # release leadership now: a standby takes over within one check interval
        log.info("monitor stopped")

    def _remaining(self) -> float:
        assert self.stopped_at is not None
        return EXIT_DEADLINE - (time.monotonic() - self.stopped_at)

    def _wait_for_jobs(self) -> None:
        """Let running jobs finish within the deadline; past it, the process exits without them."""
        for thread in threading.enumerate():
            if thread is threading.main_thread() or thread.daemon:
                continue
            thread.join(timeout=max(0.0, self._remaining()))
        busy = [
            t.name
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if busy:
            log.warning("abandoning jobs still running at the shutdown deadline", extra={"threads": busy})
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


@click.command("run")
@click.option("--host", default=None, help="Listen address (default: http.host, or MONITOR_HTTP_HOST).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen port (default: http.port, or MONITOR_HTTP_PORT; 8000).",
)
@click.pass_obj
@handle_errors
def run_command(app: App, host: str | None, port: int | None) -> None:
    """Run the monitor: scheduled collection, scoring, alerts and the HTTP server, until SIGTERM/SIGINT."""
    settings = app.settings
    # A read-only or full /data is a clear error now; the database itself is connected (and its schema
    # upgraded) by the Runner, retrying while it is unreachable.
    check_data_dir(settings.database_url)
    engine = create_db_engine(settings.database_url)
    code = Runner(settings, engine, host=host, port=port).run()
    engine.dispose()
    # Everything is closed: skip the interpreter's teardown, which spends seconds garbage-collecting the
    # model's tensors (measured 5-6 s on 2 busy cores) and would put the 10 s SIGTERM budget at risk.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def register(cli: click.Group) -> None:
    cli.add_command(run_command)
