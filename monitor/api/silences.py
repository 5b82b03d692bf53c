"""`/api/silences`: list, create and expire silences, the same as `monitor silence` (included by routes.py,
so it sits behind the API token and the query gate like every `/api/*` route).

A bad silence answers 422 naming the field (`{"error": "invalid silence: ends_at: ...", "detail": [...]}`),
an unknown id 404, a silence that already ended 409.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from monitor.alerts.silencing import new_silence
from monitor.store import silences
from monitor.store.silences import SilenceError
from monitor.timeutil import utcnow

router = APIRouter()


class SilenceOut(BaseModel):
    id: int
    state: Literal["pending", "active", "expired"]
    rule: str | None
    topic: str | None
    severity: str | None
    starts_at: str
    ends_at: str
    reason: str
    created_by: str | None
    created_at: str
    expired_at: str | None = Field(description="When it was expired early; null otherwise.")


class SilencesResponse(BaseModel):
    items: list[SilenceOut]


class SilenceIn(BaseModel):
    """A new silence: at least one matcher, and either `duration` or `ends_at`."""

    model_config = ConfigDict(extra="forbid")

    rule: str | None = Field(default=None, max_length=100, description="Rule name (or `feed-health`).")
    topic: str | None = Field(default=None, max_length=100, description="Topic, or a feed's name.")
    severity: Literal["info", "warning", "critical"] | None = None
    starts_at: str | None = Field(default=None, max_length=64, description="ISO 8601; default now.")
    ends_at: str | None = Field(default=None, max_length=64, description="ISO 8601 (or give `duration`).")
    duration: str | None = Field(default=None, max_length=32, description="From the start: 30m, 2h, 3d.")
    reason: str = Field(max_length=1000, description="Why the alerts are silenced.")
    created_by: str | None = Field(default=None, max_length=100)


def _error(exc: SilenceError) -> JSONResponse:
    status = 404 if exc.not_found else 409 if exc.field == "id" else 422
    message = f"invalid silence: {exc.field}: {exc.message}" if status == 422 else exc.message
    detail = [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}]
    return JSONResponse(status_code=status, content={"error": message, "detail": detail})


@router.get(
    "/silences",
    response_model=SilencesResponse,
    tags=["silences"],
    summary="Active and pending silences (the data of `monitor silence list`)",
)
def list_silences(
    request: Request,
    include_ended: Annotated[
        bool, Query(alias="all", description="Also silences that have ended (expired).")
    ] = False,
) -> dict[str, Any]:
    now = utcnow()
    rows = silences.list_silences(request.app.state.engine, now, include_ended=include_ended)
    return {"items": [silences.as_dict(row, now) for row in rows]}


@router.post(
    "/silences",
    response_model=SilenceOut,
    status_code=201,
    tags=["silences"],
    summary="Add a silence (`monitor silence add`)",
    responses={422: {"description": "A bad silence: no matcher, an end not after its start, ..."}},
)
def add_silence(request: Request, body: SilenceIn) -> dict[str, Any] | JSONResponse:
    now = utcnow()
    try:
        row = new_silence(
            request.app.state.settings,
            request.app.state.engine,
            silences.Matchers(body.rule, body.topic, body.severity),
            reason=body.reason,
            created_by=body.created_by,
            now=now,
            start=body.starts_at,
            duration=body.duration,
            until=body.ends_at,
        )
    except SilenceError as exc:
        return _error(exc)
    return silences.as_dict(row, now)


@router.delete(
    "/silences/{silence_id}",
    response_model=SilenceOut,
    tags=["silences"],
    summary="Expire a silence now (`monitor silence expire`)",
    responses={404: {"description": "No such silence."}, 409: {"description": "It has already ended."}},
)
def expire_silence(
    request: Request, silence_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="A silence id.")]
) -> dict[str, Any] | JSONResponse:
    now = utcnow()
    try:
        row = silences.expire(request.app.state.engine, silence_id, now)
    except SilenceError as exc:
        return _error(exc)
    return silences.as_dict(row, now)
