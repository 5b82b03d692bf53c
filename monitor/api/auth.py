"""Bearer-token check for `/api/*` when `MONITOR_API_TOKEN` (http.api_token) is set."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status


def make_token_check(token: str | None):  # noqa: ANN201 - a FastAPI dependency
    """A dependency that lets every request through when no token is configured.

    The comparison is constant-time (`hmac.compare_digest` on bytes) so response timing does not
    reveal how much of a guessed token was right.
    """
    expected = token.encode("utf-8") if token else None

    def check(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing bearer token: send 'Authorization: Bearer <MONITOR_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(supplied.strip().encode("utf-8"), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return check
