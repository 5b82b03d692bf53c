"""A real SMTP server on 127.0.0.1 for the e-mail receiver's tests: aiosmtpd with STARTTLS and AUTH.

    server = SmtpServer(tmp_path).start()       # STARTTLS required, AUTH (PLAIN/LOGIN) after it
    receiver config: host 127.0.0.1, port server.port, username/password USER/PASSWORD, ca_file server.ca_file
    server.refuse_login = True                  # every AUTH answers 535
    server.fail_data(451, times=2)              # the next two messages answer 451 (try again later)
    server.messages                             # the accepted messages, parsed (email.message.EmailMessage)
    server.stop()

The certificate comes from a throwaway CA made by `trustme` for this test run only (127.0.0.1, localhost);
`ca_file` is that CA in PEM, so the client verifies the server's certificate as it would a real relay's.
`SilentServer` accepts connections and never says a word (an SMTP server that hangs).
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "monitor"
PASSWORD = "s3cret-smtp-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self.refuse_login = False
        self._data_failures: list[list[int]] = []  # [code, times left]
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.port = 0
        self.ca_file = ""

    def start(self) -> SmtpServer:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_context)
        self.ca_file = str(self.folder / "smtp-test-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self.port = free_port()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=server_context,
            require_starttls=True,
            authenticator=self._authenticate,
            auth_required=True,
            auth_require_tls=True,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def fail_data(self, code: int, times: int = 1) -> None:
        with self._lock:
            self._data_failures.append([code, times])

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            not self.refuse_login
            and isinstance(data, LoginPassword)
            and data.login.decode() == USER
            and data.password.decode() == PASSWORD
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 235 or 535

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self._data_failures:
                failure = self._data_failures[0]
                failure[1] -= 1
                if failure[1] <= 0:
                    self._data_failures.pop(0)
                return f"{failure[0]} 4.3.0 Try again later" if failure[0] < 500 else f"{failure[0]} No"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (no SMTP greeting)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._held:
            conn.close()
