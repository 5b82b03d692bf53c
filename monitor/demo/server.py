"""A local HTTP server for the demo's recorded feeds, with their dates moved up to the present.

The feeds in `monitor/demo/feeds/` were recorded around `ANCHOR`. Served as they are, the dashboard's
"last 7 days" would be empty, so every date in them is shifted by the same amount: the newest item
appears a few minutes old and the days of history before it keep their spacing.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

FEEDS_DIR = Path(__file__).parent / "feeds"
# When the recorded feeds were captured (their newest item is a little before this).
ANCHOR = datetime(2025, 11, 25, 18, 0, tzinfo=UTC)

CONTENT_TYPES = {".xml": "application/xml; charset=utf-8"}
_RFC822_TAGS = re.compile(r"<(pubDate|lastBuildDate)>([^<]+)</\1>")
_ISO_TAGS = re.compile(r"<(published|updated)>([^<]+)</\1>")


def shift_dates(text: str, delta: timedelta) -> str:
    """Move every RSS (RFC 822) and Atom (ISO 8601) date in a feed by `delta`."""

    def rfc822(match: re.Match[str]) -> str:
        moved = parsedate_to_datetime(match.group(2).strip()) + delta
        return f"<{match.group(1)}>{format_datetime(moved.astimezone(UTC), usegmt=True)}</{match.group(1)}>"

    def iso(match: re.Match[str]) -> str:
        moved = datetime.fromisoformat(match.group(2).strip().replace("Z", "+00:00")) + delta
        return (
            f"<{match.group(1)}>{moved.astimezone(UTC).isoformat().replace('+00:00', 'Z')}</{match.group(1)}>"
        )

    return _ISO_TAGS.sub(iso, _RFC822_TAGS.sub(rfc822, text))


def feed_files() -> list[Path]:
    return sorted(FEEDS_DIR.glob("*.xml"))


class DemoFeedServer:
    """Serves `/<file name>` for each recorded feed on 127.0.0.1 (a free port unless one is given)."""

    def __init__(
        self, port: int = 0, now: datetime | None = None, lag: timedelta = timedelta(minutes=3)
    ) -> None:
        now = now or datetime.now(UTC)
        # Whole minutes, so every run of the demo shows tidy times.
        shift = now - lag - ANCHOR
        self.delta = timedelta(minutes=int(shift.total_seconds() // 60))
        self.payloads = {
            f"/{path.name}": shift_dates(path.read_text(encoding="utf-8"), self.delta).encode("utf-8")
            for path in feed_files()
        }
        payloads = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                body = payloads.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(HTTPStatus.NOT_FOUND, "no such feed")
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", CONTENT_TYPES[".xml"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("demo feed server: " + format, *args)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def start(self) -> DemoFeedServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="demo-feeds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> DemoFeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
