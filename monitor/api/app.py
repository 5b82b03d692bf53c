"""The HTTP server: health probes, Prometheus metrics, the JSON API and the dashboard.

`monitor run` builds it with `create_app(settings, engine, status)` and serves it with uvicorn in the
same process as the scheduler. Probes (`/healthz`, `/readyz`) and `/metrics` are always open; `/api/*`
needs `Authorization: Bearer <token>` when `http.api_token` / `MONITOR_API_TOKEN` is set.
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
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine

from monitor import __version__, metrics
from monitor.api import routes
from monitor.api.auth import make_token_check
from monitor.api.metrics_view import render
from monitor.config import Settings
from monitor.params import ParamError
from monitor.status import RuntimeStatus
from monitor.store.db import DatabaseError, check_connection

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

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
    app = FastAPI(
        title="AI-chip news sentiment monitor",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
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

    # ------------------------------------------------------------------ probes and metrics (open)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process and its scheduler are alive")
    def healthz() -> JSONResponse:
        problems = status.live_problems()
        body = {"status": "ok" if not problems else "unhealthy", "problems": problems, **status.snapshot()}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get(
        "/readyz", tags=["operations"], summary="Readiness: the database answers and the model is loaded"
    )
    def readyz() -> JSONResponse:
        problems = list(status.ready_problems())
        try:
            check_connection(engine)
            database = "ok"
        except DatabaseError as exc:
            database = "unreachable"
            problems.append(str(exc))
        body = {
            "status": "ready" if not problems else "not ready",
            "database": database,
            "problems": problems,
            "model": status.snapshot()["model"],
        }
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition format)")
    def prometheus() -> Response:
        return Response(render(engine), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ the API (token when configured)

    app.include_router(routes.router, prefix="/api", dependencies=[Depends(make_token_check(token))])

    # ------------------------------------------------------------ the dashboard (open page, protected data)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
