"""One probe's connection: policy-checked connect, TLS, the greeting wait, and its deadline.

Shared by the SMTP and IMAP dialogues, which differ only in what they say once connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace

from app.probe.errors import ProbeError
from app.probe.model import Encryption, Endpoint, ErrorCode, ProbeSettings
from app.probe.network import Resolver, resolve_allowed
from app.probe.proxy import open_tunnel, resolves_at_proxy
from app.probe.streams import MailStream

# A plaintext mail server greets at once; one that stays silent this long is most likely an
# implicit-TLS port waiting for our ClientHello (the classic 465/993 vs starttls mix-up).
# 4 s, not 5: the verdict for that mix-up (wait + one TLS handshake) must land within 5 s.
GREETING_WAIT_SECONDS = 4.0
# QUIT/LOGOUT are courtesy: the verdict is known, so never let them eat into the deadline.
GOODBYE_SECONDS = 1.0


# OpenSSL's ways of saying "the peer answered with something that is not TLS".
_PLAINTEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
     "HTTP_REQUEST"}
)


def is_plaintext_reply(exc: ssl.SSLError) -> bool:
    return (exc.reason or "") in _PLAINTEXT_REASONS or "wrong version number" in str(exc)


class ProbeSession:
    def __init__(
        self, endpoint: Endpoint, settings: ProbeSettings, context: ssl.SSLContext
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.context = context
        # SNI and certificate checks use the name the user gave, not the address we dial.
        self.server_hostname = endpoint.host.strip("[]").rstrip(".")
        self.stage = "starting"
        self.deadline = 0.0  # loop time; set by the Prober when its timeout starts
        self.succeeded = False
        # True while the proxy's tunnel is being opened: a deadline then is the proxy's failure.
        self.tunnelling = False
        # Encryption not given: what the probe found (SSL after the handshake, STARTTLS after
        # the upgrade), and whether the port turned out to greet in plaintext.
        self.detecting = endpoint.encryption == Encryption.AUTO
        self.detected: Encryption | None = None
        self.plaintext_port = False
        self._conn: MailStream | None = None

    @property
    def conn(self) -> MailStream:
        assert self._conn is not None, "not connected"
        return self._conn

    def remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    async def connect(self, resolver: Resolver) -> None:
        endpoint = self.endpoint
        if not 0 < endpoint.port < 65536:
            raise ProbeError(ErrorCode.CONNECTION_REFUSED, f"invalid port {endpoint.port}")
        # Validation refuses these too, but an account saved before the policy changed, or a
        # preset filled in by a worker, reaches here: no DNS, no connection.
        refusal = self.settings.host_policy.refusal(endpoint.host, endpoint.port)
        if refusal is not None:
            raise ProbeError(ErrorCode.HOST_BLOCKED, refusal)
        self.stage = "resolving the host"
        proxy = endpoint.proxy or self.settings.default_proxy
        if proxy is not None and resolves_at_proxy(proxy, endpoint.host):
            addresses = [endpoint.host]  # socks5h: the proxy resolves the (policy-checked) name
        else:
            addresses = await resolve_allowed(
                endpoint.host, endpoint.port, resolver, self.settings.allow_networks
            )
        if proxy is not None:
            self.stage = f"connecting through the proxy {proxy.display}"
            self.tunnelling = True
            sock = await open_tunnel(proxy, addresses, endpoint.port, resolver=resolver,
                                     allow=self.settings.allow_networks, remaining=self.remaining)
            self._conn = await MailStream.over(sock)
            self.tunnelling = False
        else:
            await self._connect_directly(addresses)
        if endpoint.encryption == Encryption.SSL:
            self.stage = "TLS handshake"
            await self.conn.start_tls(self.context, self.server_hostname)
        elif endpoint.encryption == Encryption.AUTO:
            await self._detect(resolver)

    async def _connect_directly(self, addresses: list[str]) -> None:
        self.stage = "connecting"
        last_error: BaseException | None = None
        for index, address in enumerate(addresses):
            left = len(addresses) - index
            # Share the time left between the addresses still to try, so one black-holed
            # address cannot use up the whole deadline; the last one gets all that remains.
            budget = self.remaining() / left if left > 1 else None
            try:
                async with asyncio.timeout(budget):
                    self._conn = await MailStream.open(address, self.endpoint.port)
                break
            except (OSError, TimeoutError) as exc:  # TimeoutError: only this address's budget
                last_error = exc
        else:
            assert last_error is not None
            raise last_error

    async def _detect(self, resolver: Resolver) -> None:
        """No encryption given: implicit TLS when the port speaks it, else STARTTLS over a
        fresh connection. The dialogue then refuses a server that does not offer STARTTLS
        before any credential is sent, so detection never falls back to plaintext."""
        self.stage = "TLS handshake (detecting the encryption)"
        # A server that has already sent its greeting speaks plaintext, and a handshake would
        # wait for an answer to the ClientHello that such a server may never send.
        if not self.conn.buffered:
            try:
                await self.conn.start_tls(self.context, self.server_hostname)
                self.detected = Encryption.SSL
                return
            except ssl.SSLError as exc:
                # A certificate or any other TLS failure is the verdict: the port speaks TLS.
                if not is_plaintext_reply(exc):
                    raise
        # The server greeted in plaintext (or took our ClientHello for a bad command): start
        # again on a new connection, inside the same deadline.
        self.conn.abort()
        self.plaintext_port = True
        self.endpoint = replace(self.endpoint, encryption=Encryption.STARTTLS)
        await self.connect(resolver)

    async def wait_for_greeting(self) -> None:
        """Wait for the first greeting byte; if a plaintext port stays silent, find out whether
        it is really an implicit-TLS port, and say so at once instead of at the deadline."""
        self.stage = "waiting for the greeting"
        if self.conn.tls:
            return  # the TLS handshake already proved someone is talking
        wait = min(GREETING_WAIT_SECONDS, max(self.remaining() / 2, 0.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.conn.wait_readable()
                return
        # Silent. Send a ClientHello: a TLS port answers it, a black hole stays silent (and the
        # deadline reports connection_timeout), a slow plaintext server answers with text.
        self.stage = "no greeting, then trying TLS"
        try:
            await self.conn.start_tls(self.context, self.server_hostname)
        except ssl.SSLError as exc:
            if is_plaintext_reply(exc):
                raise ProbeError(
                    ErrorCode.CONNECTION_TIMEOUT,
                    f"no greeting within {wait:.1f} s (the server is too slow to greet)",
                ) from None
        raise ProbeError(
            ErrorCode.TLS_HANDSHAKE_FAILED,
            f"no greeting within {wait:.1f} s, but the port answers a TLS handshake: "
            "the port may expect implicit TLS (ssl)",
        )

    async def upgrade(self) -> None:
        """STARTTLS after the server's go-ahead."""
        if self.conn.buffered:
            # Bytes after the go-ahead were sent in the clear: possibly injected (CVE-2011-0411).
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR,
                "server sent data after agreeing to STARTTLS (possible injection); not continuing",
            )
        self.stage = "TLS handshake after STARTTLS"
        await self.conn.start_tls(self.context, self.server_hostname)
        if self.detecting:
            self.detected = Encryption.STARTTLS

    async def goodbye(self, farewell: Callable[[], Awaitable[object]]) -> None:
        """Run QUIT/LOGOUT under a short timeout of its own and ignore how it ends."""
        budget = min(GOODBYE_SECONDS, self.remaining() - 0.05)
        if budget <= 0:
            return
        self.stage = "saying goodbye"
        # Anything may go wrong in a farewell; the verdict is already known and must stand.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(budget):
                await farewell()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.abort()
