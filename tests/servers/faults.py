"""Misbehaving and scripted mail servers for tests, each on 127.0.0.1 in a background thread.

Every helper is a context manager yielding a `FaultServer` (host, port, and everything it
received), so tests can assert both on the probe's verdict and on what reached the server
(for instance that no password was sent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.servers.tls import CertPair

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def server_tls_context(pair: CertPair) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert_file, pair.key_file)
    return context


class BackgroundLoop:
    """An event loop running in a daemon thread; servers live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@dataclass
class FaultServer:
    host: str
    port: int
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)  # credentials a script accepted

    def received_text(self) -> str:
        return self.received.decode("utf-8", "replace")


class Peer:
    """The server's side of one connection; records every byte it reads."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: FaultServer
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.server = server
        self.tls = writer.get_extra_info("sslcontext") is not None

    async def readline(self) -> bytes:
        line = await self.reader.readline()
        self.server.received += line
        return line

    async def readexactly(self, count: int) -> bytes:
        data = await self.reader.readexactly(count)
        self.server.received += data
        return data

    async def send(self, *lines: str) -> None:
        # One write: asyncio sends each write at once, and a reply split over two segments
        # would make tests that need it in one (STARTTLS injection) depend on timing.
        self.writer.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))
        await self.writer.drain()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context)
        self.tls = True

    async def drain_until_eof(self) -> None:
        while await self.readline():
            pass


Handler = Callable[[Peer], Awaitable[None]]


@contextlib.contextmanager
def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> Iterator[FaultServer]:
    """Run handler for every connection; tls makes the port implicit TLS."""
    with BackgroundLoop() as background:
        info = FaultServer(LOOPBACK, 0)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            info.connections += 1
            # Swallowing cancellation too: at shutdown a cancelled handler task would make
            # asyncio's stream callback log a CancelledError traceback (Python 3.11).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await handler(Peer(reader, writer, info))
            with contextlib.suppress(Exception):
                writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(on_connect, LOOPBACK, 0, ssl=tls)

        server = background.run(start())
        info.port = server.sockets[0].getsockname()[1]
        try:
            yield info
        finally:
            background.loop.call_soon_threadsafe(server.close)  # asyncio is not thread-safe


# --- transport faults ---------------------------------------------------------------------------


@contextlib.contextmanager
def silent_server() -> Iterator[FaultServer]:
    """Accepts, reads, never says a word (a black hole, or an implicit-TLS port's view)."""

    async def handler(peer: Peer) -> None:
        await peer.drain_until_eof()

    with serve(handler) as server:
        yield server


@contextlib.contextmanager
def drip_server(
    payload: bytes = b"220 drip.test ESMTP ready\r\n", interval: float = 1.0
) -> Iterator[FaultServer]:
    """Sends its greeting one byte per interval: alive, but hopelessly slow."""

    async def handler(peer: Peer) -> None:
        for byte in payload:
            peer.writer.write(bytes([byte]))
            await peer.writer.drain()
            await asyncio.sleep(interval)
        await peer.drain_until_eof()

    with serve(handler) as server:
        yield server


@contextlib.contextmanager
def garbage_server(
    banner: bytes = b"\x00\xff\xfeSSH-2.0-garbage \x1b[31m not a mail server\r\n",
) -> Iterator[FaultServer]:
    """Greets with bytes no mail client understands (or any fixed banner you pass)."""

    async def handler(peer: Peer) -> None:
        peer.writer.write(banner)
        await peer.writer.drain()
        await peer.drain_until_eof()

    with serve(handler) as server:
        yield server


@contextlib.contextmanager
def closing_server(banner: bytes = b"") -> Iterator[FaultServer]:
    """Sends banner (maybe nothing, maybe half a line) and hangs up."""

    async def handler(peer: Peer) -> None:
        peer.writer.write(banner)
        await peer.writer.drain()

    with serve(handler) as server:
        yield server


# --- OAuth2 (XOAUTH2, OAUTHBEARER) on the scripted servers -------------------------------------

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# What Dovecot sends as the error challenge for a refused token (base64 of this JSON).
OAUTH_ERROR_JSON = '{"status":"401","schemes":"bearer","scope":"mail"}'


def parse_oauth_response(mechanism: str, blob: str) -> tuple[str, str]:
    """(user, token) from a base64 XOAUTH2/OAUTHBEARER client response; ("", "") if malformed."""
    try:
        fields = base64.b64decode(blob, validate=True).decode().split("\x01")
    except ValueError:
        return "", ""
    user = ""
    if mechanism == "XOAUTH2":
        user = next((f[5:] for f in fields if f.startswith("user=")), "")
    elif fields[0].startswith("n,a="):  # OAUTHBEARER's gs2 header: n,a=<authzid>,
        user = fields[0][4:].rstrip(",").replace("=2C", ",").replace("=3D", "=")
    token = next((f[12:] for f in fields if f.startswith("auth=Bearer ")), "")
    return user, token


async def refuse_token(peer: Peer, continuation: str) -> str:
    """The error challenge a refused token gets before the final refusal; returns the
    client's answer to it (XOAUTH2: empty; OAUTHBEARER: "AQ==")."""
    error = base64.b64encode(OAUTH_ERROR_JSON.encode()).decode()
    await peer.send(f"{continuation} {error}")
    return (await peer.readline()).decode("utf-8", "replace").strip()


# --- scripted SMTP ----------------------------------------------------------------------------

SmtpReplies = Mapping[str, "str | None"]


@contextlib.contextmanager
def scripted_smtp(
    replies: SmtpReplies | None = None,
    *,
    greeting: str = "220 fault.test ESMTP ready",
    auth_mechanisms: str | None = "PLAIN LOGIN",
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    users: Mapping[str, str] | None = None,
) -> Iterator[FaultServer]:
    """An SMTP server that answers from a script.

    replies maps a command verb (EHLO, HELO, STARTTLS, AUTH, QUIT, ...) to the reply to send:
    a string whose lines are separated by "\\n", or None to hang up instead. "{received}" in a
    reply is replaced by what the client sent for that command (to test echoing servers).
    AUTH without a scripted reply checks `users` (if given) or accepts anything; XOAUTH2 and
    OAUTHBEARER check the token as the password, and a refused token first gets the JSON error
    challenge that Dovecot and Gmail send.
    STARTTLS is offered only when a `starttls` context is given.
    """
    script = dict(replies or {})

    async def reply(peer: Peer, verb: str, received: str, default: str) -> bool:
        text = script.get(verb, default)
        if text is None:
            return False
        await peer.send(*text.replace("{received}", received).split("\n"))
        return True

    async def auth(peer: Peer, args: list[str], received: str) -> bool:
        mechanism = args[0].upper() if args else ""
        user = password = ""
        if mechanism == "PLAIN":
            blob = args[1] if len(args) > 1 else None
            if blob is None:
                await peer.send("334 ")
                blob = (await peer.readline()).decode().strip()
                received += " " + blob
            with contextlib.suppress(Exception):
                _, user, password = base64.b64decode(blob).decode().split("\0")
        elif mechanism == "LOGIN":
            await peer.send("334 VXNlcm5hbWU6")
            answer = (await peer.readline()).decode().strip()
            await peer.send("334 UGFzc3dvcmQ6")
            secret = (await peer.readline()).decode().strip()
            received += f" {answer} {secret}"
            with contextlib.suppress(Exception):
                user = base64.b64decode(answer).decode()
                password = base64.b64decode(secret).decode()
        elif mechanism in OAUTH_MECHANISMS:  # the token is checked as the user's password
            blob = args[1] if len(args) > 1 else ""
            user, password = parse_oauth_response(mechanism, blob)
            if users is not None and users.get(user) != password and "AUTH" not in script:
                received += " " + await refuse_token(peer, "334")
        else:
            return await reply(peer, "AUTH", received, "504 5.5.4 Unrecognized mechanism")
        ok = users is None or users.get(user) == password
        if ok and "AUTH" not in script:
            peer.server.logins.append((user, password))
        default = "235 2.7.0 Authentication successful" if ok else "535 5.7.8 Bad credentials"
        return await reply(peer, "AUTH", received, default)

    async def handler(peer: Peer) -> None:
        if not await reply(peer, "GREETING", "", greeting):
            return
        while line := await peer.readline():
            received = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, *args = received.split()
            verb = verb.upper() if verb else ""
            if verb in ("EHLO", "HELO"):
                lines = ["250-fault.test greets you"]
                if verb == "EHLO":
                    if starttls is not None and not peer.tls:
                        lines.append("250-STARTTLS")
                    if auth_mechanisms:
                        lines.append(f"250-AUTH {auth_mechanisms}")
                lines.append("250 HELP")
                if not await reply(peer, verb, received, "\n".join(lines)):
                    return
            elif verb == "STARTTLS":
                if not await reply(peer, verb, received, "220 2.0.0 Ready to start TLS"):
                    return
                text = script.get("STARTTLS") or "220"
                if starttls is not None and text.startswith("220"):
                    await peer.start_tls(starttls)
            elif verb == "AUTH":
                if not await auth(peer, args, received):
                    return
            elif verb == "QUIT":
                await reply(peer, verb, received, "221 2.0.0 Bye")
                return
            elif not await reply(peer, verb, received, "502 5.5.2 Command not recognized"):
                return

    with serve(handler, tls=implicit_tls) as server:
        yield server


@contextlib.contextmanager
def bad_cert_smtp(pair: CertPair, *, implicit: bool = True) -> Iterator[FaultServer]:
    """SMTP whose certificate a client must reject (pass pki.expired, pki.self_signed or
    pki.wrong_host): implicit TLS, or STARTTLS when implicit=False."""
    context = server_tls_context(pair)
    if implicit:
        with scripted_smtp(implicit_tls=context) as server:
            yield server
    else:
        with scripted_smtp(starttls=context) as server:
            yield server


# --- scripted IMAP ----------------------------------------------------------------------------

_ATOM = re.compile(rb'[^\s(){%*"\\\]]+')
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}$")


class _ImapInput:
    """Reads one client command, answering synchronizing literals with '+'."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def command(self) -> bytes | None:
        line = await self.peer.readline()
        if not line:
            return None
        data = line.rstrip(b"\r\n")
        while (literal := _LITERAL.search(data)) is not None:
            size, non_sync = int(literal.group(1)), literal.group(2)
            if not non_sync:
                await self.peer.send("+ Ready for literal data")
            chunk = await self.peer.readexactly(size)
            rest = (await self.peer.readline()).rstrip(b"\r\n")
            data = data[: literal.start()] + _quote_bytes(chunk) + rest
        return data


def _quote_bytes(raw: bytes) -> bytes:
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def parse_imap_args(data: bytes) -> list[str]:
    """Atoms and quoted strings (literals were already turned into quoted strings)."""
    args: list[str] = []
    index = 0
    while index < len(data):
        if data[index : index + 1] == b" ":
            index += 1
        elif data[index : index + 1] == b'"':
            index += 1
            value = bytearray()
            while index < len(data) and data[index : index + 1] != b'"':
                if data[index : index + 1] == b"\\":
                    index += 1
                value += data[index : index + 1]
                index += 1
            index += 1
            args.append(value.decode("utf-8", "replace"))
        else:
            match = _ATOM.match(data, index)
            if match is None:
                args.append(data[index:].decode("utf-8", "replace"))
                break
            args.append(match.group(0).decode("utf-8", "replace"))
            index = match.end()
    return args


@contextlib.contextmanager
def scripted_imap(
    users: Mapping[str, str] | None = None,
    *,
    replies: Mapping[str, str | None] | None = None,
    capabilities: Sequence[str] = ("IMAP4rev1", "AUTH=PLAIN", "SASL-IR"),
    capabilities_in_greeting: bool = True,
    greeting: str | None = None,
    login_disabled: bool = False,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    untagged_before: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[FaultServer]:
    """A small IMAP server: LOGIN (quoted or literal), AUTHENTICATE PLAIN, XOAUTH2 and
    OAUTHBEARER (the token checked as the password), STARTTLS, EXAMINE.

    replies maps a command (LOGIN, AUTHENTICATE, EXAMINE, STARTTLS, ...) to the tagged
    response text without the tag ("NO [ALERT] ..."), or None to hang up instead; "{received}"
    in it is replaced by the command as received (to test echoing servers).
    untagged_before maps a command to untagged lines sent just before its tagged response.
    login_disabled advertises LOGINDISABLED and refuses LOGIN.
    """
    accounts = dict(users if users is not None else {"user@example.com": "secret"})
    script = dict(replies or {})
    extra = {k.upper(): list(v) for k, v in (untagged_before or {}).items()}

    def caps(peer: Peer) -> str:
        found = list(capabilities)
        if starttls is not None and not peer.tls:
            found.append("STARTTLS")
        if login_disabled:
            found.append("LOGINDISABLED")
        return " ".join(found)

    async def answer(
        peer: Peer, tag: str, command: str, default: str, received: str = ""
    ) -> bool:
        text = script.get(command, default)
        await peer.send(*(f"* {u}" for u in extra.get(command, [])))
        if text is None:
            return False
        await peer.send(f"{tag} {text.replace('{received}', received)}")
        return True

    def check(peer: Peer, user: str, password: str) -> bool:
        if accounts.get(user) == password:
            peer.server.logins.append((user, password))
            return True
        return False

    async def handler(peer: Peer) -> None:
        reader = _ImapInput(peer)
        code = f"[CAPABILITY {caps(peer)}] " if capabilities_in_greeting else ""
        await peer.send(greeting or f"* OK {code}fault IMAP ready")
        authenticated = (greeting or "").upper().startswith("* PREAUTH")
        while (data := await reader.command()) is not None:
            received = data.decode("utf-8", "replace")
            tag, _, rest = received.partition(" ")
            command, _, _ = rest.partition(" ")
            command = command.upper()
            args = parse_imap_args(data[len(tag) + len(command) + 2 :])
            if command == "CAPABILITY":
                await peer.send(f"* CAPABILITY {caps(peer)}")
                ok = await answer(peer, tag, command, "OK CAPABILITY completed")
            elif command == "STARTTLS":
                ok = await answer(peer, tag, command, "OK Begin TLS negotiation now")
                if ok and starttls is not None and script.get(command, "OK").startswith("OK"):
                    await peer.start_tls(starttls)
            elif command == "LOGIN":
                if login_disabled:
                    ok = await answer(peer, tag, command, "NO [PRIVACYREQUIRED] LOGIN disabled")
                else:
                    good = len(args) == 2 and check(peer, args[0], args[1])
                    authenticated = good or command in script
                    default = (
                        "OK [CAPABILITY IMAP4rev1] Logged in"
                        if good
                        else "NO [AUTHENTICATIONFAILED] Authentication failed."
                    )
                    ok = await answer(peer, tag, command, default, received)
            elif command == "AUTHENTICATE":
                mechanism = args[0].upper() if args else ""
                blob = args[1] if len(args) > 1 else None
                if blob is None:
                    await peer.send("+ ")
                    blob = (await peer.readline()).decode().strip()
                    received += " " + blob
                user = password = ""
                if mechanism in OAUTH_MECHANISMS:  # the token is checked as the user's password
                    user, password = parse_oauth_response(mechanism, blob)
                else:
                    with contextlib.suppress(Exception):
                        _, user, password = base64.b64decode(blob).decode().split("\0")
                good = check(peer, user, password)
                if not good and mechanism in OAUTH_MECHANISMS and command not in script:
                    received += " " + await refuse_token(peer, "+")
                authenticated = good or command in script
                default = "OK Logged in" if good else "NO [AUTHENTICATIONFAILED] Failed."
                ok = await answer(peer, tag, command, default, received)
            elif command in ("EXAMINE", "SELECT"):
                if not authenticated:
                    ok = await answer(peer, tag, command, "BAD Not authenticated")
                else:
                    if command not in script:
                        await peer.send("* FLAGS (\\Seen)", "* 0 EXISTS", "* 0 RECENT")
                    ok = await answer(peer, tag, command, "OK [READ-ONLY] EXAMINE completed")
            elif command == "LOGOUT":
                await peer.send("* BYE Logging out")
                await answer(peer, tag, command, "OK LOGOUT completed")
                return
            else:
                ok = await answer(peer, tag, command, "BAD Unknown command")
            if not ok:
                return

    with serve(handler, tls=implicit_tls) as server:
        yield server
