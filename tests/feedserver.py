"""A local HTTP server for feed tests: real sockets on 127.0.0.1, a random port, controllable behaviour.

Files under tests/feeds/ are served at /feeds/<name> with an ETag and Last-Modified (and 304s for
conditional requests). `server.route(path, ...)` installs a behaviour for one path: status, headers,
body, gzip, redirects, a hang, a trickle, an endless or oversized body. Every request is recorded.

    with FeedServer() as server:
        server.route("/slow", file="rss20.xml", trickle=1.0)
        url = server.url("/slow")
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import importlib.util
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FEEDS_DIR = Path(__file__).parent / "feeds"
FIXED_LAST_MODIFIED = "Tue, 25 Nov 2025 12:00:00 GMT"


def load_samples() -> dict[str, dict]:
    """The Unicode originals of the legacy-encoded files (tests/feeds/make_encoded.py)."""
    spec = importlib.util.spec_from_file_location("make_encoded", FEEDS_DIR / "make_encoded.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.SAMPLES


def content_type_for(name: str) -> str | None:
    if name.endswith(".html"):
        return "text/html; charset=utf-8"
    # text/xml without a charset: the hardest case (RFC 3023 says US-ASCII, which is wrong for all of them).
    return "text/xml"


@dataclass
class Route:
    body: bytes | None = None
    file: str | None = None
    status: int = 200
    content_type: str | None = "default"  # "default": by file name; None: no Content-Type header
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | bool = True  # True: derived from the body; False: none
    last_modified: str | None = FIXED_LAST_MODIFIED
    gzip: bool = False
    location: str | None = None  # for 3xx
    delay: float = 0.0  # seconds before answering
    hang: bool = False  # accept, read the request, never answer
    trickle: float | None = None  # send the body one byte every `trickle` seconds
    trickle_headers: float | None = None  # send the status line and headers one byte at a time
    endless: bool = False  # an endless body (no Content-Length)
    content_length: int | None = None  # declare this Content-Length (and send only the real body)


class FeedServer:
    def __init__(self, root: Path = FEEDS_DIR) -> None:
        self.root = root
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.feed_server = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="feedserver", daemon=True
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def route(self, path: str, **kwargs: Any) -> str:
        """Install a behaviour for `path`; returns its full URL."""
        with self._lock:
            self.routes[path] = Route(**kwargs)
        return self.url(path)

    def requests_for(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [headers for p, headers in self.requests if p == path]

    def _resolve(self, path: str) -> Route | None:
        with self._lock:
            route = self.routes.get(path)
        if route is not None:
            return route
        if path.startswith("/feeds/"):
            name = path.removeprefix("/feeds/")
            if "/" not in name and (self.root / name).is_file():
                return Route(file=name)
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    feed_server: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-body (size caps, timeouts, cancels) are what the tests provoke.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        fs = self.server.feed_server
        path = self.path.split("?", 1)[0]
        with fs._lock:
            fs.hits[path] += 1
            fs.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
        route = fs._resolve(path)
        if route is None:
            self._simple(404, b"not found")
            return
        if route.hang:
            self.close_connection = True
            while not fs.stopping.wait(0.05):
                pass
            return
        if route.delay:
            fs.stopping.wait(route.delay)
        body = (
            route.body
            if route.body is not None
            else (fs.root / route.file).read_bytes()
            if route.file
            else b""
        )
        headers: dict[str, str] = {}
        content_type = (
            content_type_for(route.file or "") if route.content_type == "default" else route.content_type
        )
        if content_type:
            headers["Content-Type"] = content_type
        etag = None
        if route.etag is True and route.status == 200:
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        elif isinstance(route.etag, str):
            etag = route.etag
        if etag:
            headers["ETag"] = etag
        if route.last_modified and route.status == 200:
            headers["Last-Modified"] = route.last_modified
        if route.location:
            headers["Location"] = route.location
        headers.update(route.headers)
        status = route.status
        if status == 200 and self._not_modified(etag, route.last_modified):
            self._send_head(304, {k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")}, 0)
            return
        if route.gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        if route.endless:
            self.close_connection = True
            self._send_head(status, {**headers, "Connection": "close"}, None)
            chunk = b"<item><title>more</title></item>" * 256
            try:
                while not fs.stopping.is_set():
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        if route.trickle is not None:
            self.close_connection = True
            self._send_head(status, {**headers, "Connection": "close"}, len(body))
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if fs.stopping.wait(route.trickle):
                        return
            except OSError:
                pass
            return
        length = route.content_length if route.content_length is not None else len(body)
        if route.trickle_headers is not None:
            self.close_connection = True
            head = f"HTTP/1.1 {status} OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()
            try:
                for i in range(len(head)):
                    self.wfile.write(head[i : i + 1])
                    self.wfile.flush()
                    if fs.stopping.wait(route.trickle_headers):
                        return
                self.wfile.write(body)
            except OSError:
                pass
            return
        self._send_head(status, headers, length)
        with contextlib.suppress(OSError):
            self.wfile.write(body)
        if route.content_length is not None:
            self.close_connection = True

    def _not_modified(self, etag: str | None, last_modified: str | None) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return etag is not None and etag in [t.strip() for t in if_none_match.split(",")]
        since = self.headers.get("If-Modified-Since")
        if since and last_modified:
            try:
                return email.utils.parsedate_to_datetime(since) >= email.utils.parsedate_to_datetime(
                    last_modified
                )
            except (TypeError, ValueError):
                return False
        return False

    def _send_head(self, status: int, headers: dict[str, str], length: int | None) -> None:
        self.send_response_only(status)
        self.send_header("Date", email.utils.formatdate(time.time(), usegmt=True))
        for key, value in headers.items():
            self.send_header(key, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _simple(self, status: int, body: bytes) -> None:
        self._send_head(status, {"Content-Type": "text/plain"}, len(body))
        self.wfile.write(body)
