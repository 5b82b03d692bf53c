"""A local stand-in for the Slack Web API and incoming webhooks, on 127.0.0.1, for tests and benchmarks.

    server = SlackServer(token="xoxb-...").start()
    settings: slack.api_url = server.api_url, slack.webhook_url = server.webhook_url
    server.fail("chat.postMessage", status=429, retry_after="2")          # seconds form
    server.fail("chat.postMessage", status=429, retry_after=some_datetime) # HTTP-date form
    server.fail("chat.postMessage", status=503, times=3)
    server.fail("chat.postMessage", error="channel_not_found")          # HTTP 200, ok:false
    server.fail("chat.postMessage", hang=5)                              # no answer for 5 s, then close
    server.fail("chat.postMessage", hang=5, apply=True)                  # posts, then never answers
    server.fail("webhook", trickle=1.0)                  # headers at once, then one body byte a second
    server.fail("webhook", trickle=1.0, trickle_headers=True)            # the headers themselves trickle
    server.stop()

Speaks: auth.test, chat.postMessage, chat.update, conversations.history, conversations.replies (JSON,
form or query parameters; bearer token), and webhooks at /services/... . Validates what real Slack rejects
(missing channel or text, more than 50 blocks, section text over 3000, header over 150 characters) and
records every request. Threads, reply_broadcast and message metadata behave like Slack's.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "xoxb-test-0000000000-standin-token"
WEBHOOK_PATH = "/services/T000TEST/B000TEST/standinwebhooksecret"
TRICKLE_FOR = 30.0  # a trickled answer stops after this long (a test of a missing deadline still ends)


@dataclass
class Failure:
    status: int = 200
    error: str | None = None  # ok:false error code (HTTP 200) or webhook body
    retry_after: str | datetime | None = None
    hang: float | None = None
    apply: bool = False  # perform the action, then fail (the answer is lost)
    times: int = 1
    trickle: float | None = None  # seconds between the bytes of a slow answer (for up to TRICKLE_FOR)
    trickle_headers: bool = False  # trickle from the status line on (else the headers come at once)


@dataclass
class Recorded:
    method: str  # Web API method, or "webhook"
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 0


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    metadata: dict[str, Any] | None = None
    edited: list[dict[str, Any]] = field(default_factory=list)  # previous versions


class SlackServer:
    def __init__(self, token: str = DEFAULT_TOKEN, channels: dict[str, str] | None = None) -> None:
        self.token = token
        self.channels = channels or {"alerts": "C0ALERTS1", "general": "C0GENERAL"}  # name -> id
        self.requests: list[Recorded] = []
        self.messages: list[Message] = []  # bot messages in posting order
        self.webhook_messages: list[dict[str, Any]] = []
        self._failures: dict[str, list[Failure]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._last_ts = 0.0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SlackServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="slack-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> SlackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    # ------------------------------------------------------------------ programming and inspection

    def fail(self, method: str, **kwargs: Any) -> None:
        """Queue a failure for the next call(s) of `method` ("chat.postMessage", "webhook", ...)."""
        with self._lock:
            self._failures.setdefault(method, []).append(Failure(**kwargs))

    def calls(self, method: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def posts(self) -> list[Message]:
        """Messages posted with chat.postMessage (top level and thread replies)."""
        with self._lock:
            return list(self.messages)

    def top_level(self) -> list[Message]:
        return [m for m in self.posts() if m.thread_ts is None]

    def replies(self, thread_ts: str) -> list[Message]:
        return [m for m in self.posts() if m.thread_ts == thread_ts]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.messages.clear()
            self.webhook_messages.clear()
            self._failures.clear()

    # ------------------------------------------------------------------ request handling

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        params: dict[str, Any] = dict(parse_qsl(url.query))
        content_type = handler.headers.get("Content-Type", "")
        if raw:
            if "json" in content_type:
                try:
                    params.update(json.loads(raw.decode("utf-8")))
                except ValueError:
                    return self._reply(handler, 400, {"ok": False, "error": "invalid_json"})
            else:
                params.update(parse_qsl(raw.decode("utf-8")))
        if url.path.startswith("/services/"):
            method = "webhook"
        elif url.path.startswith("/api/"):
            method = url.path[len("/api/") :]
        else:
            return self._reply(handler, 404, "not found", text=True)
        record = Recorded(method, params, {k: v for k, v in handler.headers.items()}, time.time())
        with self._lock:
            self.requests.append(record)
            queue = self._failures.get(method) or []
            failure = queue[0] if queue else None
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    queue.pop(0)

        if failure is not None:
            if failure.apply:
                self._dispatch(method, params, handler, url.path)
            record.status = -1 if failure.hang else failure.status
            return self._fail(handler, failure, method)
        status, body, is_text = self._dispatch(method, params, handler, url.path)
        record.status = status
        self._reply(handler, status, body, text=is_text)

    def _fail(self, handler: BaseHTTPRequestHandler, failure: Failure, method: str) -> None:
        if failure.trickle:
            return self._trickle(handler, failure.trickle, failure.trickle_headers)
        if failure.hang:
            self._stopping.wait(failure.hang)
            handler.close_connection = True
            return
        headers: dict[str, str] = {}
        if failure.retry_after is not None:
            value = failure.retry_after
            headers["Retry-After"] = (
                format_datetime(value, usegmt=True) if isinstance(value, datetime) else str(value)
            )
        if failure.status == 200:
            body: Any = {"ok": False, "error": failure.error or "fatal_error"}
            return self._reply(handler, 200, body, headers=headers)
        if method == "webhook" or failure.status >= 500:
            text = failure.error or (
                "rate_limited" if failure.status == 429 else "<html>upstream error</html>"
            )
            return self._reply(handler, failure.status, text, text=True, headers=headers)
        return self._reply(
            handler, failure.status, {"ok": False, "error": failure.error or "ratelimited"}, headers=headers
        )

    def _trickle(self, handler: BaseHTTPRequestHandler, every: float, headers_too: bool) -> None:
        """A slow-loris answer: one byte every `every` seconds, so no single read ever times out."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        if not headers_too:
            handler.wfile.write(head)
            head = b""
        data = head + b" " * 100000
        handler.close_connection = True
        end = time.monotonic() + TRICKLE_FOR
        for i in range(len(data)):
            if time.monotonic() > end or self._stopping.wait(every):
                return
            try:
                handler.wfile.write(data[i : i + 1])
                handler.wfile.flush()
            except OSError:  # the client gave up
                return

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        *,
        text: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header(
                "Content-Type", "text/plain; charset=utf-8" if text else "application/json; charset=utf-8"
            )
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ------------------------------------------------------------------ Slack behaviour

    def _next_ts(self) -> str:
        with self._lock:
            now = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = now
        return f"{now:.6f}"

    def _channel_id(self, channel: str | None) -> str | None:
        if not channel:
            return None
        name = channel.lstrip("#")
        if name in self.channels:
            return self.channels[name]
        return channel if channel in self.channels.values() else None

    def _dispatch(
        self, method: str, params: dict[str, Any], handler: BaseHTTPRequestHandler, path: str
    ) -> tuple[int, Any, bool]:
        if method == "webhook":
            return self._webhook(params, path)
        auth = handler.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, False
        if token != self.token:
            return 200, {"ok": False, "error": "invalid_auth"}, False
        handlers = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
        }
        if method not in handlers:
            return 200, {"ok": False, "error": "unknown_method"}, False
        return 200, handlers[method](params), False

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://standin.slack.test/",
            "team": "Stand-in",
            "user": "monitor",
            "team_id": "T000TEST",
            "user_id": "U0MONITOR",
            "bot_id": "B0MONITOR",
        }

    @staticmethod
    def _blocks(params: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return None, "invalid_blocks_format"
        if blocks is None:
            return None, None
        if not isinstance(blocks, list) or len(blocks) > 50:
            return None, "invalid_blocks"
        for block in blocks:
            kind = block.get("type")
            text = (block.get("text") or {}).get("text", "")
            if kind == "section" and not 1 <= len(text) <= 3000:
                return None, "invalid_blocks"
            if kind == "header" and not 1 <= len(text) <= 150:
                return None, "invalid_blocks"
            for element in block.get("elements") or []:
                if len(element.get("text", "")) > 3000:
                    return None, "invalid_blocks"
        return blocks, None

    @staticmethod
    def _metadata(params: dict[str, Any]) -> dict[str, Any] | None:
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        return metadata or None

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(params.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        blocks, error = self._blocks(params)
        if error:
            return {"ok": False, "error": error}
        text = params.get("text") or ""
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        thread_ts = params.get("thread_ts") or None
        if thread_ts and not any(m.ts == thread_ts and m.channel == channel for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        message = Message(
            channel,
            self._next_ts(),
            text,
            blocks,
            thread_ts,
            str(params.get("reply_broadcast")).lower() in ("true", "1"),
            self._metadata(params),
        )
        with self._lock:
            self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": self._shape(message, True)}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(params.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        blocks, error = self._blocks(params)
        if error:
            return {"ok": False, "error": error}
        with self._lock:
            for message in self.messages:
                if message.channel == channel and message.ts == params.get("ts"):
                    message.edited.append({"text": message.text, "blocks": message.blocks})
                    message.text = params.get("text") or message.text
                    message.blocks = blocks if blocks is not None else message.blocks
                    return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}
        return {"ok": False, "error": "message_not_found"}

    @staticmethod
    def _flag(value: Any) -> bool:
        return str(value).lower() in ("1", "true")

    def _shape(self, message: Message, metadata: bool) -> dict[str, Any]:
        shaped: dict[str, Any] = {
            "type": "message",
            "ts": message.ts,
            "text": message.text,
            "bot_id": "B0MONITOR",
        }
        if message.blocks is not None:
            shaped["blocks"] = message.blocks
        if message.thread_ts:
            shaped["thread_ts"] = message.thread_ts
        if metadata and message.metadata:
            shaped["metadata"] = message.metadata
        return shaped

    def _page(self, found: list[Message], params: dict[str, Any], newest_first: bool) -> dict[str, Any]:
        oldest = float(params.get("oldest") or 0)
        found = [m for m in found if float(m.ts) > oldest]
        found.sort(key=lambda m: float(m.ts), reverse=newest_first)
        limit = int(params.get("limit") or 100)
        start = int(params.get("cursor") or 0)
        page = found[start : start + limit]
        more = start + limit < len(found)
        metadata = self._flag(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self._shape(m, metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if channel not in self.channels.values():
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            found = [
                m
                for m in self.messages
                if m.channel == channel and (m.thread_ts is None or m.reply_broadcast)
            ]
        return self._page(found, params, newest_first=True)

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        if channel not in self.channels.values():
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            parent = [m for m in self.messages if m.channel == channel and m.ts == ts]
            if not parent:
                return {"ok": False, "error": "thread_not_found"}
            found = parent + [m for m in self.messages if m.channel == channel and m.thread_ts == ts]
        return self._page(found, params, newest_first=False)

    def _webhook(self, params: dict[str, Any], path: str) -> tuple[int, Any, bool]:
        if path != WEBHOOK_PATH:
            return 404, "no_service", True
        blocks, error = self._blocks(params)
        if error:
            return 400, "invalid_blocks", True
        if not params.get("text") and not blocks:
            return 400, "no_text", True
        with self._lock:
            self.webhook_messages.append(params)
        return 200, "ok", True
