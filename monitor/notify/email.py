"""The e-mail receiver (`kind: email`): one plain-text message per notification over SMTP (`smtplib`).

Security: `starttls` (default, port 587) upgrades the connection before anything else is said and refuses to
go on when the server does not offer STARTTLS, so a password never crosses the network in clear; `tls`
(port 465) speaks TLS from the first byte; `none` (port 25) is for a relay on the same host and refuses a
password (checked at config load). Certificates are verified against the system's CAs, or `ca_file`.

The whole exchange — connect, greeting, STARTTLS, login, message — is bounded by `notify.timeout`, not each
socket read (smtplib's own timeout is per read): a server that accepts the connection and then says nothing,
or one byte at a time, is cut off by a `Deadline` (monitor/notify/bounded.py) that shuts the socket down.

Failures: a refused login, a server without STARTTLS, an untrusted certificate and 5xx answers fail at once
with the server's words as the reason (they need the configuration fixed, then `monitor alerts redeliver`);
4xx answers ("try again later"), dropped connections and timeouts are retried with backoff.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from monitor.config import EmailReceiverConfig, Settings
from monitor.notify.bounded import Deadline
from monitor.notify.message import dashboard_link, render_console
from monitor.notify.transports import Job, SendError, Sent

SMTP_NETWORK_ERRORS = (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError, OSError)
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


class _Bounded:
    """Mixin for smtplib.SMTP and SMTP_SSL: connect within the time left and register every socket."""

    deadline: Deadline
    sock: socket.socket | None
    source_address: Any

    def _plain_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        left = self.deadline.remaining()
        if left <= 0:
            raise TimeoutError("no time left to connect")
        sock = socket.create_connection((host, port), min(timeout, left), self.source_address)
        # Reads wait past the deadline: the deadline ends them, so a slow server reads as a timeout.
        sock.settimeout(left + 1.0)
        self.deadline.watch(sock)
        return sock

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        reply = super().starttls(*args, **kwargs)  # type: ignore[misc]
        assert self.sock is not None
        self.deadline.watch(self.sock)  # the TLS socket that replaced the plain one
        return reply


class _SMTP(_Bounded, smtplib.SMTP):
    def __init__(self, deadline: Deadline, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._plain_socket(host, port, timeout)


class _SMTPSSL(_Bounded, smtplib.SMTP_SSL):
    def __init__(self, deadline: Deadline, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = self.context.wrap_socket(self._plain_socket(host, port, timeout), server_hostname=host)
        self.deadline.watch(sock)
        return sock


class EmailReceiver:
    """Sends each notification as a text/plain e-mail to the configured recipients."""

    name = "smtp"

    def __init__(self, config: EmailReceiverConfig, *, timeout: float, public_url: str | None) -> None:
        self.config = config
        self.timeout = timeout
        self.public_url = public_url
        self.domain = parseaddr(config.from_)[1].rpartition("@")[2] or "aichip-monitor.invalid"

    @classmethod
    def from_config(cls, config: EmailReceiverConfig, settings: Settings) -> EmailReceiver:
        timeout = settings.notify.timeout.total_seconds()
        return cls(config, timeout=timeout, public_url=settings.http.public_url)

    # ------------------------------------------------------------------ the message

    def message_id(self, key: str) -> str:
        """The same on every attempt of one notification (mail systems and people can tell a repeat); the
        key is reduced to the characters a Message-ID may carry."""
        return f"<{_UNSAFE_ID.sub('-', key)}@{self.domain}>"

    def build(self, job: Job) -> EmailMessage:
        p = job.payload
        text = render_console(p)
        title, _, _ = text.partition("\n")
        message = EmailMessage()
        message["Subject"] = " ".join(f"{self.config.subject_prefix}{title}".split())
        message["From"] = self.config.from_
        message["To"] = ", ".join(self.config.to)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = self.message_id(str(p.get("key") or f"notification-{job.id}"))
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders do not answer it
        message["X-Monitor-Kind"] = job.kind
        if p.get("fingerprint"):
            message["X-Monitor-Fingerprint"] = str(p["fingerprint"])
        if job.parent is not None and job.kind in ("reminder", "resolved"):
            # The episode's first message: mail clients show reminders and the resolved notice in its thread.
            message["In-Reply-To"] = job.parent.ts
            message["References"] = job.parent.ts
        link = dashboard_link(self.public_url, str(p.get("topic") or "")) if job.kind != "digest" else None
        message.set_content(text + (f"\n\nDashboard: {link}" if link else "") + "\n")
        return message

    # ------------------------------------------------------------------ sending

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.ca_file)

    def send(self, job: Job) -> Sent:
        message = self.build(job)
        with Deadline(self.timeout) as deadline:
            try:
                self._exchange(deadline, message)
            except SendError:
                raise
            except smtplib.SMTPException as exc:
                if deadline.expired and isinstance(exc, smtplib.SMTPServerDisconnected):
                    raise _timeout(self.timeout) from None
                raise classify_smtp(exc) from None
            except ssl.SSLCertVerificationError as exc:
                raise SendError(
                    f"SMTP server's TLS certificate is not trusted ({exc.verify_message}): set the "
                    "receiver's ca_file, or fix the server's certificate",
                    transient=False,
                ) from None
            except SMTP_NETWORK_ERRORS as exc:
                if deadline.expired:
                    raise _timeout(self.timeout) from None
                raise SendError(
                    f"SMTP network error: {type(exc).__name__}: {exc}",
                    transient=True,
                    unknown=True,
                    category="network",
                ) from None
        if deadline.expired:  # the exchange ended at the deadline: the last answer may be cut short
            raise _timeout(self.timeout)
        return Sent(ts=str(message["Message-ID"]))

    def _exchange(self, deadline: Deadline, message: EmailMessage) -> None:
        config = self.config
        where: dict[str, Any] = {"host": config.host, "port": config.smtp_port, "timeout": self.timeout}
        # Connects (and reads the greeting, raising SMTPConnectError unless it is 220) right here.
        if config.security == "tls":
            smtp: smtplib.SMTP = _SMTPSSL(deadline, context=self._context(), **where)
        else:
            smtp = _SMTP(deadline, **where)
        try:
            smtp.ehlo()
            if config.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SendError(
                        "SMTP server does not offer STARTTLS: not sending (set security: tls or use a server "
                        "that offers it)",
                        transient=False,
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if config.username:
                password = config.password.get_secret_value() if config.password else ""
                smtp.login(config.username, password)
            smtp.send_message(message)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()  # the message was accepted: a lost goodbye changes nothing
        finally:
            smtp.close()


def _timeout(seconds: float) -> SendError:
    return SendError(
        f"SMTP server gave no complete answer within {seconds:g}s (notify.timeout)",
        transient=True,
        unknown=True,
        category="network",
    )


def _words(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(said.split())}"[:300]


def classify_smtp(exc: smtplib.SMTPException) -> SendError:
    """An SMTP failure as a SendError: 4xx answers are temporary by definition (RFC 5321), 5xx are not."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SendError(
            f"SMTP server refused the login ({_words(exc.smtp_code, exc.smtp_error)}): check the receiver's "
            "username and password",
            transient=False,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendError(f"SMTP server does not support what was asked: {exc}", transient=False)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = {address: _words(code, text) for address, (code, text) in exc.recipients.items()}
        later = any(400 <= code < 500 for code, _ in exc.recipients.values())
        listed = "; ".join(f"{address}: {said}" for address, said in answers.items())
        return SendError(f"SMTP server refused every recipient ({listed})", transient=later)
    if isinstance(exc, smtplib.SMTPResponseException):
        said = _words(exc.smtp_code, exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            return SendError(
                f"SMTP server asked to try later ({said})", transient=True, category="server_error"
            )
        return SendError(f"SMTP server refused the message ({said})", transient=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SendError(
            f"SMTP server closed the connection: {exc}", transient=True, unknown=True, category="network"
        )
    return SendError(f"SMTP error: {type(exc).__name__}: {exc}", transient=True, category="unexpected")
