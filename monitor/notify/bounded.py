"""slack_sdk's clients with the WHOLE request bounded by `notify.timeout`, not each socket read.

slack_sdk hands its `timeout` to urllib, which applies it to every socket operation separately: a receiver
that sends its headers and then one byte a second never lets a read time out, and held a delivery for 71 s
with `notify.timeout: 3s`. Here the two request hooks of slack_sdk's sync clients open the request through
an opener whose connections are registered with a `Deadline`: each connect waits at most the time left, and
when the time is up a timer shuts the connection's socket down, which ends whatever read is blocked on it.
Everything else (retry handlers, parsing, `SlackApiError`) stays slack_sdk's own code. The two hooks
(`_perform_urllib_http_request_internal`, `_perform_http_request_internal`) are private to slack_sdk 3.x: the
trickling-receiver tests in tests/test_notify_delivery.py fail if an upgrade renames them.

The answer is also capped (`MAX_ANSWER_BYTES`): a receiver cannot fill the memory within the deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import math
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from email.message import Message
from types import TracebackType
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackRequestError
from slack_sdk.webhook import WebhookResponse

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # far above a 200-message history page with metadata


class Deadline:
    """The end of one request: sockets registered here are shut down when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:  # connected just as time ran out
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    """Wake a read blocked on `sock` (it returns end-of-file); closing is left to its owner."""
    # OSError: already closed, or detached by the TLS wrapper (then its SSL socket is watched instead).
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixin for http.client connections: connect within the time left, then register the socket."""

    deadline: Deadline

    def _connect_within_deadline(
        self, address: tuple[str, int], timeout: Any = None, source_address: Any = None
    ) -> socket.socket:
        left = self.deadline.remaining()
        if left <= 0:
            raise TimeoutError("no time left to connect")
        if isinstance(timeout, int | float):
            left = min(left, float(timeout))
        sock = socket.create_connection(address, left, source_address)
        self.deadline.watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.deadline.watch(self.sock)  # type: ignore[attr-defined]  # the TLS socket, once wrapped


class _HTTPConnection(_Watched, http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._create_connection = self._connect_within_deadline


class _HTTPSConnection(_Watched, http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._create_connection = self._connect_within_deadline


def _factory(cls: type, deadline: Deadline) -> Callable[..., http.client.HTTPConnection]:
    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        return cls(host, deadline=deadline, **kwargs)

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: Request) -> http.client.HTTPResponse:
        return self.do_open(_factory(_HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline, context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self.deadline = deadline

    def https_open(self, req: Request) -> http.client.HTTPResponse:
        return self.do_open(_factory(_HTTPSConnection, self.deadline), req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: the 3xx answer reaches the caller as an HTTPError."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _read(response: Any) -> bytes:
    body = response.read(MAX_ANSWER_BYTES + 1)
    if len(body) > MAX_ANSWER_BYTES:
        raise http.client.HTTPException(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    return body


def open_bounded(
    req: Request,
    seconds: float,
    context: ssl.SSLContext | None,
    proxy: str | None = None,
    *,
    redirects: bool = True,
) -> tuple[int, Message, bytes]:
    """(status, headers, body) of `req`, all of it within `seconds`; else TimeoutError.

    An HTTP error status is raised as slack_sdk expects (`HTTPError`), with its body already read.
    `proxy`: the client's own (slack_sdk reads HTTPS_PROXY too); without one urllib's environment rules apply.
    `redirects=False`: a 3xx is raised as an `HTTPError` too (urllib would re-send a POST as a GET).
    """
    if not req.full_url.lower().startswith(("http://", "https://")):
        raise SlackRequestError(f"Invalid URL detected: {req.full_url}")  # as slack_sdk: no file:// etc.
    deadline = Deadline(seconds)
    handlers: list[urllib.request.BaseHandler] = [_HTTPHandler(deadline), _HTTPSHandler(deadline, context)]
    if proxy:
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    if not redirects:
        handlers.append(_NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    with deadline:
        try:
            answer = _exchange(opener, req, seconds)
        except HTTPError as error:
            if deadline.expired:  # its body may have been cut short by the deadline
                raise _timeout(seconds) from error
            raise
        except (OSError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise _timeout(seconds) from exc
            raise
    if deadline.expired:  # a body without a length ends at the shutdown: it may be cut short
        raise _timeout(seconds)
    return answer


def _exchange(
    opener: urllib.request.OpenerDirector, req: Request, seconds: float
) -> tuple[int, Message, bytes]:
    try:
        with opener.open(req, timeout=seconds) as response:
            return response.status, response.headers, _read(response)
    except HTTPError as error:
        body = _read(error)
        raise HTTPError(error.url, error.code, error.msg, error.headers, io.BytesIO(body)) from None


def _timeout(seconds: float) -> TimeoutError:
    return TimeoutError(f"no complete answer within {seconds:g}s (notify.timeout)")


class BoundedWebClient(WebClient):
    """`WebClient` whose every request ends within `total_timeout` seconds."""

    def __init__(self, *, total_timeout: float, **kwargs: Any) -> None:
        super().__init__(timeout=math.ceil(total_timeout), **kwargs)  # slack_sdk's own (per read) is unused
        self.total_timeout = total_timeout

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        status, headers, body = open_bounded(req, self.total_timeout, self.ssl, self.proxy)
        charset = headers.get_content_charset() or "utf-8"
        return {"status": status, "headers": headers, "body": body.decode(charset, errors="replace")}


class BoundedWebhookClient(WebhookClient):
    """`WebhookClient` whose every request ends within `total_timeout` seconds."""

    def __init__(self, url: str, *, total_timeout: float, **kwargs: Any) -> None:
        super().__init__(url, timeout=math.ceil(total_timeout), **kwargs)  # slack_sdk's own is unused
        self.total_timeout = total_timeout

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        status, headers, body = open_bounded(req, self.total_timeout, self.ssl, self.proxy)
        charset = headers.get_content_charset() or "utf-8"
        return WebhookResponse(
            url=url,
            status_code=status,
            body=body.decode(charset, errors="replace"),
            headers=headers,  # type: ignore[arg-type]
        )
