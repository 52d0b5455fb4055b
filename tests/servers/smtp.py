"""A real SMTP server (aiosmtpd) with AUTH PLAIN/LOGIN, on three loopback listeners:

- starttls_port: plaintext greeting, STARTTLS offered, AUTH only after TLS (like 587)
- ssl_port: implicit TLS from the first byte (like 465)
- plain_port: no TLS at all, AUTH allowed in the clear (encryption "none")

    with start_smtp_server(pki, {"user@example.com": "secret"}) as smtp:
        ... Endpoint(smtp.host, smtp.starttls_port, Encryption.STARTTLS, ...)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.servers.faults import LOOPBACK, BackgroundLoop, server_tls_context
from tests.servers.tls import TestPKI

CertName = Literal["good", "self_signed", "expired", "wrong_host"]

# aiosmtpd logs every connection at INFO, and a deprecation warning on every AUTH.
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass
class SmtpServer:
    host: str
    starttls_port: int
    ssl_port: int
    plain_port: int
    # (username, mechanism, accepted) for every AUTH attempt; passwords are not kept.
    auth_attempts: list[tuple[str, str, bool]] = field(default_factory=list)


class _Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


@contextlib.contextmanager
def start_smtp_server(
    pki: TestPKI, users: Mapping[str, str], cert: CertName = "good"
) -> Iterator[SmtpServer]:
    accounts = dict(users)
    tls = server_tls_context(getattr(pki, cert))
    info = SmtpServer(host="localhost", starttls_port=0, ssl_port=0, plain_port=0)

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = False
        username = ""
        if isinstance(auth_data, LoginPassword):
            username = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            ok = username in accounts and accounts[username] == password
        info.auth_attempts.append((username, mechanism, ok))
        return AuthResult(success=ok, handled=False)

    with BackgroundLoop() as background:
        loop = background.loop

        def factory(**options: Any) -> Any:
            return lambda: SMTP(
                _Handler(),
                hostname="mail.test",
                authenticator=authenticator,
                loop=loop,
                **options,
            )

        async def start() -> list[Any]:
            return [
                await loop.create_server(
                    factory(tls_context=tls, auth_require_tls=True), LOOPBACK, 0
                ),
                # aiosmtpd only knows about STARTTLS-made TLS, hence auth_require_tls=False here.
                await loop.create_server(factory(auth_require_tls=False), LOOPBACK, 0, ssl=tls),
                await loop.create_server(factory(auth_require_tls=False), LOOPBACK, 0),
            ]

        servers = background.run(start())
        info.starttls_port, info.ssl_port, info.plain_port = (
            s.sockets[0].getsockname()[1] for s in servers
        )
        try:
            yield info
        finally:
            for server in servers:
                loop.call_soon_threadsafe(server.close)
