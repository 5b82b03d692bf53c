"""Fetch a feed over HTTP: timeouts, a total deadline, a size cap, manual redirects, conditional GET.

Why not `httpx.get(..., follow_redirects=True)`:
- a *permanent* redirect (301/308) must update the stored feed URL, and a redirect loop must be named;
- httpx's read timeout is per socket read, so a server that trickles one byte every few seconds would
  hold a poll forever. Every socket operation here is bounded by the remaining time of a total deadline
  (`_DeadlineBackend`), and can be cancelled when the process shuts down;
- the size cap is applied to the *decoded* body, decompressing with a bounded output, so neither an
  endless body nor a gzip bomb can exhaust memory;
- where a feed may point (SSRF) is checked on the resolved address of every connection, so neither a
  redirect hop nor a DNS name that resolves to cloud metadata gets through (`AddressPolicy`).
"""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from monitor.config import CollectConfig

log = logging.getLogger(__name__)

REDIRECT_CODES = (301, 302, 303, 307, 308)
PERMANENT_CODES = (301, 308)
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, "
    "text/xml;q=0.9, */*;q=0.5"
)
_POLL_SECONDS = 0.25  # socket waits are sliced so a cancel or the total deadline is noticed promptly


class FetchError(Exception):
    """A feed could not be fetched. `reason` is a short machine label, the message says what happened."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.http_status = http_status
        self.retry_after = retry_after
        self.url = url


@dataclass
class FetchResponse:
    """A fetched feed (or a 304). `permanent_url`: set when every hop of the redirect chain was permanent."""

    requested_url: str
    url: str
    status: int
    headers: httpx.Headers
    body: bytes = b""
    redirects: list[tuple[int, str]] = field(default_factory=list)
    permanent_url: str | None = None
    elapsed: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def check_http_url(url: str) -> None:
    """Raise FetchError('invalid_url') unless `url` is an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise FetchError("invalid_url", f"invalid URL {url!r}: {exc}", url=url) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(
            "invalid_url", f"not an http(s) URL: {url!r} (scheme {parts.scheme or 'missing'!r})", url=url
        )
    if not parts.hostname:
        raise FetchError("invalid_url", f"URL without a host: {url!r}", url=url)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - now_dt).total_seconds())


# ----------------------------------------------------------------------------- where feeds may point (SSRF)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Refused unless collect.allow_networks names them: link-local, where cloud metadata services answer
# (169.254.169.254, and AWS's IPv6 fd00:ec2::254, which sits in the unique-local range).
LINK_LOCAL: tuple[IPNetwork, ...] = tuple(
    ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
)
# Refused when collect.allow_private is false: this host and private networks (RFC 1918, 6598, 4193).
LOOPBACK_AND_PRIVATE: tuple[IPNetwork, ...] = tuple(
    ip_network(n)
    for n in (
        "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128",
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
    )
)  # fmt: skip


class _Refused(Exception):
    """Raised in the socket layer before connecting; `Fetcher.fetch` reports it as FetchError('refused')."""


def _is_this_host(address: IPAddress) -> bool:
    """True when `address` is one of this machine's: binding to it succeeds only then."""
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a feed (or a redirect) may connect to, from `collect` and the monitor's own port.

    Checked on resolved addresses at connect time, so a DNS name or a redirect pointing at a refused
    address is caught, and a name cannot resolve to one address when checked and another when used.
    """

    deny: tuple[tuple[IPNetwork, str], ...]
    allow: tuple[IPNetwork, ...] = ()
    own_port: int | None = None

    @classmethod
    def from_config(cls, config: CollectConfig, own_port: int | None = None) -> AddressPolicy:
        deny = [(net, "link-local or cloud metadata") for net in LINK_LOCAL]
        deny += [(net, "in collect.deny_networks") for net in config.deny_networks]
        if not config.allow_private:
            deny += [
                (net, "loopback or private, and collect.allow_private is false")
                for net in LOOPBACK_AND_PRIVATE
            ]
        return cls(tuple(deny), tuple(config.allow_networks), own_port or None)

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why connecting to address:port is refused, or None when it is allowed."""
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
        if any(address in net for net in self.allow):
            return None
        for net, why in self.deny:
            if address in net:
                return f"{address} is {why} ({net}); collect.allow_networks can allow it"
        if port == self.own_port and _is_this_host(address):
            return f"{address}:{port} is this monitor's own HTTP port; collect.allow_networks can allow it"
        return None

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host` to connect to, in resolver order; _Refused if any of them is refused
        (a name that also resolves to a metadata address is not a feed to trust)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:  # the same error create_connection would have given
            raise httpcore.ConnectError(str(exc)) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            reason = self.refusal(ip_address(text), port)
            if reason:
                named = "" if text == host.strip("[]") else f"{host} resolves to "
                raise _Refused(named + reason)
        return addresses


# ----------------------------------------------------------------------------- deadline-aware sockets


class _Limits(threading.local):
    """The deadline (time.monotonic) of the fetch running on this thread; None outside a fetch."""

    deadline: float | None = None


class _DeadlineExceeded(httpcore.ReadTimeout):
    pass


class _Cancelled(httpcore.ReadError):
    pass


def _budget(limits: _Limits, cancel: threading.Event, timeout: float | None) -> float | None:
    """How long the next socket operation may wait: its own timeout, cut to the time left."""
    if cancel.is_set():
        raise _Cancelled("cancelled")
    deadline = limits.deadline
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlineExceeded("total deadline exceeded")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """Wraps a socket stream: each operation waits at most min(its timeout, time left), in short slices."""

    def __init__(self, stream: httpcore.NetworkStream, limits: _Limits, cancel: threading.Event) -> None:
        self._stream = stream
        self._limits = limits
        self._cancel = cancel

    def _budget(self, timeout: float | None) -> float | None:
        return _budget(self._limits, self._cancel, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        started = time.monotonic()
        while True:
            budget = self._budget(None if timeout is None else timeout - (time.monotonic() - started))
            if budget is not None and budget <= 0:
                raise httpcore.ReadTimeout("read timeout")
            wait = _POLL_SECONDS if budget is None else min(_POLL_SECONDS, budget)
            try:
                return self._stream.read(max_bytes, timeout=wait)
            except httpcore.ReadTimeout:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise
                continue  # no data in this slice: check cancel/deadline, then wait again

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout=self._budget(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # noqa: ANN001, ANN201
        stream = self._stream.start_tls(
            ssl_context, server_hostname=server_hostname, timeout=self._budget(timeout)
        )
        return _DeadlineStream(stream, self._limits, self._cancel)

    def get_extra_info(self, info: str):  # noqa: ANN201
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(
        self,
        inner: httpcore.NetworkBackend,
        limits: _Limits,
        cancel: threading.Event,
        policy: AddressPolicy | None = None,
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._cancel = cancel
        self._policy = policy

    def _budget(self, timeout: float | None) -> float | None:
        return _budget(self._limits, self._cancel, timeout)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001, ANN201
        """Resolve, check every address against the policy, then connect to the checked addresses only."""
        addresses = [host] if self._policy is None else self._policy.resolve(host, port)
        for index, address in enumerate(addresses):
            try:
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=self._budget(timeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if index == len(addresses) - 1:
                    raise
                continue  # the next address of the name, as socket.create_connection would try
            return _DeadlineStream(stream, self._limits, self._cancel)
        raise httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ANN001, ANN201
        stream = self._inner.connect_unix_socket(
            path, timeout=self._budget(timeout), socket_options=socket_options
        )
        return _DeadlineStream(stream, self._limits, self._cancel)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _install_deadline(
    transport: httpx.HTTPTransport, limits: _Limits, cancel: threading.Event, policy: AddressPolicy
) -> None:
    """Put the deadline-aware, address-checking backend under httpx's connection pool."""
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if inner is None:  # pragma: no cover - httpcore internals changed: fail closed, never fetch unchecked
        raise RuntimeError("cannot install the socket wrapper (httpcore changed): feed fetching is unsafe")
    pool._network_backend = _DeadlineBackend(inner, limits, cancel, policy)


# ----------------------------------------------------------------------------- content decoding


class _Decoder:
    """gzip/deflate decoding with a bounded output, so a small compressed body cannot explode in memory."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        self.encoding = encoding
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()  # zlib-wrapped; raw deflate handled on the first error
            self._first = True
        else:
            raise FetchError("decode", f"unsupported Content-Encoding {encoding!r}")

    def decode(self, data: bytes, limit: int) -> bytes:
        if self._z is None:
            return data
        try:
            out = self._z.decompress(data, limit)
        except zlib.error:
            if self.encoding == "deflate" and getattr(self, "_first", False):
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._first = False
                return self.decode(data, limit)
            raise FetchError("decode", f"corrupt {self.encoding} body") from None
        self._first = False
        return out  # at most `limit` bytes: the caller's cap check sees an overflow as size > cap

    def flush(self) -> bytes:
        if self._z is None:
            return b""
        try:
            return self._z.flush()
        except zlib.error:
            raise FetchError("decode", f"corrupt {self.encoding} body") from None


# ----------------------------------------------------------------------------- the fetcher


class Fetcher:
    """One shared HTTP client (thread-safe) for all feeds of a collector."""

    def __init__(
        self, config: CollectConfig, *, cancel: threading.Event | None = None, own_port: int | None = None
    ) -> None:
        """`own_port`: the monitor's HTTP port, refused on this host (a feed must not call the API)."""
        self.config = config
        self.policy = AddressPolicy.from_config(config, own_port)
        self.cancel_event = cancel or threading.Event()
        self._limits = _Limits()
        timeout = httpx.Timeout(
            connect=config.connect_timeout.total_seconds(),
            read=config.read_timeout.total_seconds(),
            write=config.read_timeout.total_seconds(),
            pool=config.connect_timeout.total_seconds(),
        )
        limits = httpx.Limits(
            max_connections=max(10, config.concurrency * 4), max_keepalive_connections=config.concurrency * 2
        )
        transport = httpx.HTTPTransport(limits=limits)
        _install_deadline(transport, self._limits, self.cancel_event, self.policy)
        self._client = httpx.Client(
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": config.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"},
        )

    def close(self) -> None:
        self.cancel_event.set()
        self._client.close()

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> FetchResponse:
        """GET `url` (conditionally when validators are given). Raises FetchError with a clear message."""
        check_http_url(url)
        total = self.config.total_timeout.total_seconds()
        started = time.monotonic()
        deadline = started + total
        self._limits.deadline = deadline
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        visited = [url]
        redirects: list[tuple[int, str]] = []
        permanent = True
        current = url
        try:
            for _hop in range(self.config.max_redirects + 1):
                with self._client.stream("GET", current, headers=headers) as response:
                    status = response.status_code
                    if status in REDIRECT_CODES:
                        target = self._redirect_target(response, current)
                        if target in visited:
                            chain = " -> ".join([*visited, target])
                            raise FetchError(
                                "redirect_loop", f"redirect loop: {chain}", http_status=status, url=url
                            )
                        permanent = permanent and status in PERMANENT_CODES
                        visited.append(target)
                        redirects.append((status, target))
                        current = target
                        continue
                    result = FetchResponse(
                        requested_url=url,
                        url=current,
                        status=status,
                        headers=response.headers,
                        redirects=redirects,
                        permanent_url=current if redirects and permanent else None,
                    )
                    if status == 304:
                        result.elapsed = time.monotonic() - started
                        return result
                    if status >= 400:
                        reason = response.reason_phrase or ""
                        raise FetchError(
                            "http_4xx" if status < 500 else "http_5xx",
                            f"HTTP {status} {reason}".strip() + (f" from {current}" if redirects else ""),
                            http_status=status,
                            retry_after=parse_retry_after(response.headers.get("retry-after")),
                            url=current,
                        )
                    if status != 200 and status != 203:
                        raise FetchError(
                            "http_status",
                            f"unexpected HTTP {status} {response.reason_phrase}".strip(),
                            http_status=status,
                            url=current,
                        )
                    result.body = self._read_body(response, deadline)
                    result.elapsed = time.monotonic() - started
                    if not result.body.strip():
                        raise FetchError(
                            "empty",
                            "empty response body (HTTP 200 with no content)",
                            http_status=status,
                            url=current,
                        )
                    return result
            chain = " -> ".join(visited)
            raise FetchError(
                "too_many_redirects", f"more than {self.config.max_redirects} redirects: {chain}", url=url
            )
        except FetchError:
            raise
        except _Refused as exc:
            after = f" (redirected from {url})" if current != url else ""
            raise FetchError("refused", f"refused to connect: {exc}{after}", url=current) from None
        except (_Cancelled, httpx.ReadError) as exc:
            if self.cancel_event.is_set():
                raise FetchError("cancelled", "fetch cancelled: shutting down", url=current) from None
            raise FetchError(
                "network",
                f"connection error while reading from {_host(current)}: {_describe(exc)}",
                url=current,
            ) from None
        except httpx.TimeoutException as exc:
            connect = self.config.connect_timeout.total_seconds()
            read = self.config.read_timeout.total_seconds()
            if time.monotonic() >= deadline - 0.01 or isinstance(
                exc.__cause__ or exc.__context__, _DeadlineExceeded
            ):
                raise FetchError(
                    "timeout",
                    f"no complete response within the total deadline of {total:g}s from {_host(current)}",
                    url=current,
                ) from None
            if isinstance(exc, httpx.ConnectTimeout):
                raise FetchError(
                    "timeout",
                    f"connect timeout after {connect:g}s to {_host(current)}",
                    url=current,
                ) from None
            if isinstance(exc, httpx.PoolTimeout):
                raise FetchError("timeout", "no free HTTP connection in time", url=current) from None
            raise FetchError(
                "timeout",
                f"read timeout: no data for {read:g}s from {_host(current)}",
                url=current,
            ) from None
        except httpx.ConnectError as exc:
            raise FetchError(
                "connect", f"cannot connect to {_host(current)}: {_describe(exc)}", url=current
            ) from None
        except httpx.RemoteProtocolError as exc:
            raise FetchError(
                "protocol", f"invalid HTTP response from {_host(current)}: {_describe(exc)}", url=current
            ) from None
        except httpx.HTTPError as exc:
            raise FetchError(
                "network", f"HTTP error from {_host(current)}: {_describe(exc)}", url=current
            ) from None
        finally:
            self._limits.deadline = None

    def _redirect_target(self, response: httpx.Response, current: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise FetchError(
                "protocol",
                f"HTTP {response.status_code} redirect without a Location header",
                http_status=response.status_code,
                url=current,
            )
        target = urljoin(current, location.strip())
        try:
            check_http_url(target)
        except FetchError as exc:
            raise FetchError(
                "invalid_url", f"redirected to a non-http(s) URL: {target!r}", url=current
            ) from exc
        return target

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        cap = self.config.max_bytes
        declared = response.headers.get("content-length")
        encoding = response.headers.get("content-encoding", "")
        if declared and declared.strip().isdigit() and not encoding and int(declared) > cap:
            raise FetchError(
                "too_large",
                f"response is {int(declared):,} bytes, over the {cap:,}-byte limit (not read)",
                http_status=response.status_code,
                url=str(response.url),
            )
        decoder = _Decoder(encoding)
        chunks: list[bytes] = []
        size = 0
        for raw in response.iter_raw():
            if self.cancel_event.is_set():
                raise FetchError("cancelled", "fetch cancelled: shutting down", url=str(response.url))
            if time.monotonic() > deadline:
                total = self.config.total_timeout.total_seconds()
                raise FetchError(
                    "timeout",
                    f"no complete response within the total deadline of {total:g}s from {response.url}",
                    url=str(response.url),
                )
            data = decoder.decode(raw, cap - size + 1)
            size += len(data)
            if size > cap:
                raise FetchError(
                    "too_large",
                    f"response body exceeds the {cap:,}-byte limit (stopped reading)",
                    http_status=response.status_code,
                    url=str(response.url),
                )
            chunks.append(data)
        tail = decoder.flush()
        if size + len(tail) > cap:
            raise FetchError(
                "too_large", f"response body exceeds the {cap:,}-byte limit", url=str(response.url)
            )
        chunks.append(tail)
        return b"".join(chunks)


def _host(url: str) -> str:
    """host[:port] of a URL: short enough for a table cell, and says which server failed."""
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
