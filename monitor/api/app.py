"""The HTTP server: health probes, Prometheus metrics, the JSON API and the dashboard.

`monitor run` builds it with `create_app(settings, engine, status)` and serves it with uvicorn in the
same process as the scheduler. Probes (`/healthz`, `/readyz`) are always open and name no feed, rule or
count; `/api/*` needs `Authorization: Bearer <token>` when `http.api_token` / `MONITOR_API_TOKEN` is set,
and so does `/metrics` with `http.metrics_require_token`. `/docs` serves Swagger UI from the
`fastapi-offline` package: nothing is fetched from a CDN, so it works offline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine

from monitor import __version__, metrics
from monitor.api import routes
from monitor.api.auth import make_token_check
from monitor.api.limits import QueryGate
from monitor.api.metrics_view import render
from monitor.config import Settings
from monitor.params import ParamError
from monitor.status import RuntimeStatus
from monitor.store.db import DatabaseError, check_connection, error_reason
from monitor.store.migrate import schema_problem

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
DOCS_ASSETS = "/docs/static"  # Swagger UI's script, style sheet and icon, from the fastapi-offline package

DESCRIPTION = """News and sentiment monitor for the AI-chip market.

* `/api/*` returns JSON; when the server has an API token, send `Authorization: Bearer <token>`.
* Times are ISO 8601. `since` / `until` take a duration back from now (`24h`, `7d`) or a date/time
  (`2025-11-24`, `2025-11-24T09:00Z`; UTC unless it carries an offset).
* A bad parameter answers **422**; the `error` field and each `detail[].loc` name the parameter.
"""


def create_app(settings: Settings, engine: Engine, status: RuntimeStatus | None = None) -> FastAPI:
    """The FastAPI application over one database engine; `status` feeds the health probes."""
    status = status or RuntimeStatus()
    token = settings.http.api_token.get_secret_value() if settings.http.api_token else None
    app = FastAPIOffline(
        title="AI-chip news sentiment monitor",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        static_url=DOCS_ASSETS,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.status = status

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics.observe_http(template, request.method, response.status_code, time.perf_counter() - started)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        first = errors[0] if errors else {"loc": ["query", "?"], "msg": "invalid request"}
        name = ".".join(str(part) for part in first["loc"][1:]) or str(first["loc"][0])
        return JSONResponse(
            status_code=422,
            content={"error": f"invalid parameter {name!r}: {first['msg']}", "detail": errors},
        )

    @app.exception_handler(ParamError)
    async def invalid_param(_request: Request, exc: ParamError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={
                "error": f"invalid parameter {exc.param!r}: {exc.message}",
                "detail": [{"loc": ["query", exc.param], "msg": exc.message, "type": "value_error"}],
            },
        )

    # ---------------------------------------------- probes (open) and metrics (token with the switch)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process and its scheduler are alive")
    def healthz() -> JSONResponse:
        problems = status.live_problems()
        body = {"status": "ok" if not problems else "unhealthy", "problems": problems, **status.snapshot()}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the database answers at this version's schema, the model is loaded, jobs succeed",
    )
    def readyz() -> JSONResponse:
        database, problems = _database_readiness(engine)
        problems = status.ready_problems() + problems
        body = {
            "status": "ready" if not problems else "not ready",
            "database": database,
            "problems": problems,
            "model": status.snapshot()["model"],
        }
        broker = status.snapshot().get("broker")
        if broker is not None:  # a task-queue broker is configured (monitor/queue.py)
            body["broker"] = broker
        return JSONResponse(body, status_code=200 if not problems else 503)

    token_check = Depends(make_token_check(token))
    metrics_guard = [token_check] if settings.http.metrics_require_token else []

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (text exposition format)",
        dependencies=metrics_guard,
    )
    def prometheus() -> Response:
        return Response(render(engine), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ the API (token when configured)

    gate = QueryGate(settings.http.max_concurrent_queries, settings.http.query_wait)
    app.state.query_gate = gate
    # The token first: a request without it is refused at once, without taking a query slot.
    app.include_router(routes.router, prefix="/api", dependencies=[token_check, Depends(gate.slot)])

    # ------------------------------------------------------------ the dashboard (open page, protected data)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _database_readiness(engine: Engine) -> tuple[str, list[str]]:
    """("ok" | "unreachable" | "schema", problems): the database answers, at the schema this version needs."""
    try:
        check_connection(engine)
        problem = schema_problem(engine)
    except DatabaseError as exc:
        return "unreachable", [str(exc)]
    except Exception as exc:  # noqa: BLE001 - e.g. the schema vanished between the two queries
        return "unreachable", [f"database error: {error_reason(exc)}"]
    return ("ok", []) if problem is None else ("schema", [problem])
