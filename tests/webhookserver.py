"""A local generic-webhook receiver on 127.0.0.1 (the JSON webhook receiver's tests), on http.server.

server = WebhookServer().start()
receiver url: server.url                      # POST /hook
server.fail(status=500, times=3)              # the next three requests answer 500
server.fail(status=429, retry_after="2")      # then one 429 with Retry-After
server.fail(status=410)                       # "Gone"
server.fail(hang=5)                           # no answer for 5 s, then close
server.requests                               # every request: headers, raw body, parsed JSON, status
server.delivered                              # the JSON bodies it accepted (2xx), in order
server.stop()
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Failure:
    status: int = 500
    times: int = 1
    retry_after: str | None = None
    body: str = "upstream error"
    hang: float | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int = 0


class WebhookServer:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> WebhookServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="webhook-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/hook"

    def fail(self, **kwargs: Any) -> None:
        with self._lock:
            self._failures.append(Failure(**kwargs))

    @property
    def delivered(self) -> list[Any]:
        return [r.json for r in self.requests if 200 <= r.status < 300]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except ValueError:
            parsed = None
        record = Received(handler.path, dict(handler.headers.items()), raw, parsed)
        with self._lock:
            self.requests.append(record)
            failure = self._failures[0] if self._failures else None
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.pop(0)
        if failure is not None and failure.hang:
            record.status = -1
            self._stopping.wait(failure.hang)
            handler.close_connection = True
            return
        if failure is not None:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return self._reply(handler, failure.status, failure.body, headers, record)
        if parsed is None:
            return self._reply(handler, 400, "not JSON", {}, record)
        self._reply(handler, 200, "ok", {}, record)

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, body: str, headers: dict[str, str], record: Received
    ) -> None:
        record.status = status
        data = body.encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
