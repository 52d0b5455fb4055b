"""Connecting through an account's proxy: SOCKS5 (`socks5`, `socks5h`) or HTTP CONNECT (`http`).

python-socks opens SOCKS5 tunnels (HTTP CONNECT is done here: see http_connect); the probe's
own MailStream and TLS then run over the tunnelled
socket, so certificate checks, STARTTLS and the dialogues are the same as without a proxy.

The proxy's own address passes the outbound network policy like a mail host's (resolved once,
dialled only at the checked addresses). The mail host does too, except with `socks5h`, which
hands its name to the proxy to resolve (banned host names and ports still apply to the name).
Everything that goes wrong before the tunnel is open is `proxy_failed`, kept apart from the mail
server's verdicts: the mail server was never reached.

A proxy URL may carry a password: no message here ever repeats the URL, only its `display`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy

from app.credentials import Secret
from app.probe.errors import HostNotFound, ProbeError
from app.probe.model import ErrorCode, IPNetwork, ProxyScheme, ProxyTarget
from app.probe.network import Resolver, parse_ip_literal, resolve_allowed

_SCHEMES = {scheme.value: scheme for scheme in ProxyScheme}
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 1929 gives the SOCKS5 user name and password one length byte each.
MAX_CREDENTIAL_BYTES = 255
MAX_URL_LENGTH = 2048
MAX_REPLY_HEAD = 16 * 1024
FORMAT = "scheme://[user:password@]host:port with socks5, socks5h or http"


def parse_proxy_url(text: str) -> ProxyTarget:
    """The proxy a URL names; ValueError saying what is wrong, never repeating the URL."""
    if not isinstance(text, str):
        raise ValueError("must be text")
    text = text.strip()
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"is too long (at most {MAX_URL_LENGTH} characters)")
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(f"must start with socks5://, socks5h:// or http:// ({FORMAT})")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # its message quotes the URL
        raise ValueError(f"is not a valid proxy URL ({FORMAT}; ports are 1 to 65535)") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"must have nothing after the port ({FORMAT})")
    host = (parts.hostname or "").rstrip(".")
    if not host or not (parse_ip_literal(host) or _is_host_name(host)):
        raise ValueError(f"must name the proxy's host ({FORMAT})")
    if not port:
        raise ValueError(f"must give the proxy's port, e.g. {scheme.lower()}://{host}:1080")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if password and not username:
        raise ValueError("gives a password without a user name")
    for what, value in (("user name", username), ("password", password)):
        if value and len(value.encode("utf-8", "surrogatepass")) > MAX_CREDENTIAL_BYTES:
            raise ValueError(f"has a {what} longer than {MAX_CREDENTIAL_BYTES} bytes")
        if value and _CONTROL.search(value):
            raise ValueError(f"has a {what} with control characters")
    return ProxyTarget(_SCHEMES[scheme.lower()], host, port, username,
                       Secret(password) if password else None)


def proxy_from_secret(value: Secret | None) -> ProxyTarget | None:
    """The proxy stored in an account's encrypted credentials, if it has one."""
    return parse_proxy_url(value.reveal()) if value else None


def _is_host_name(host: str) -> bool:
    return len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))


def resolves_at_proxy(proxy: ProxyTarget, host: str) -> bool:
    """Whether the mail host's name goes to the proxy unresolved (socks5h, and not an IP)."""
    return proxy.scheme == ProxyScheme.SOCKS5H and parse_ip_literal(host) is None


async def open_tunnel(proxy: ProxyTarget, targets: list[str], port: int, *, resolver: Resolver,
                      allow: tuple[IPNetwork, ...], remaining: Callable[[], float]
                      ) -> socket.socket:
    """A connected socket whose far end is targets[i]:port, through the proxy.

    `targets`: the mail host's checked addresses, or its name when the proxy resolves it.
    `remaining`: seconds left of the probe's deadline, shared between the tries like direct
    connects share it. ProbeError(proxy_failed) when no try opens a tunnel.
    """
    try:
        vias = await resolve_allowed(proxy.host, proxy.port, resolver, allow)
    except HostNotFound as exc:
        raise ProbeError(ErrorCode.PROXY_FAILED,
                         f"proxy {proxy.display}: host not found ({exc})") from None
    except ProbeError as exc:  # the proxy's address is refused by the network policy
        raise ProbeError(ErrorCode.PROXY_FAILED, f"proxy {proxy.display}: {exc.message}") from None
    password = proxy.password.reveal() if proxy.password else None
    loop = asyncio.get_running_loop()
    tries = [(via, target) for via in vias for target in targets]
    unreachable: set[str] = set()
    failure = ""
    for index, (via, target) in enumerate(tries):
        if via in unreachable:
            continue
        # Share the time left between the tries still to come, as direct connects do.
        budget = max(remaining() / (len(tries) - index), 0.01)
        try:
            if proxy.scheme == ProxyScheme.HTTP:
                return await http_connect(via, proxy, target, port, password, budget)
            client = Proxy(ProxyType.SOCKS5, via, proxy.port, proxy.username, password,
                           rdns=proxy.scheme == ProxyScheme.SOCKS5H, loop=loop)
            return await client.connect(target, port, timeout=budget)
        except ProxyConnectionError as exc:
            unreachable.add(via)
            failure = (f"cannot connect to the proxy {proxy.display}"
                       f"{_at(via, proxy.host)}: {_reason(exc)}")
        except ProxyTimeoutError:
            failure = (f"the proxy {proxy.display}{_at(via, proxy.host)} did not open a "
                       f"tunnel to {target}:{port} within {budget:.1f} s")
        except ProxyError as exc:
            failure = (f"the proxy {proxy.display}{_at(via, proxy.host)} refused a tunnel to "
                       f"{target}:{port}: {exc}")
    raise ProbeError(ErrorCode.PROXY_FAILED, failure)


async def http_connect(via: str, proxy: ProxyTarget, target: str, port: int,
                       password: str | None, timeout: float) -> socket.socket:
    """An HTTP CONNECT tunnel, failing with python-socks' exceptions like the SOCKS path.

    Not python-socks' HTTP connector: it reads the proxy's reply with one recv of up to 64 KiB
    and drops whatever follows the reply's header. SMTP and IMAP servers speak first, so their
    greeting often arrives in that same read and would be lost. Here the reply is read only up
    to the blank line that ends it; everything after stays in the socket for the dialogue.
    """
    loop = asyncio.get_running_loop()
    ip = parse_ip_literal(via)
    family = socket.AF_INET6 if ip is not None and ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            try:
                await loop.sock_connect(sock, (via, proxy.port))
            except OSError as exc:
                raise ProxyConnectionError(exc.errno, str(exc)) from None
            await loop.sock_sendall(sock, _connect_request(target, port, proxy.username,
                                                           password))
            status = _status_line(await _read_head(loop, sock))
        if status[1:2] != ["200"]:
            raise ProxyError(" ".join(status[1:]) or "no status line", error_code=None)
        return sock
    except TimeoutError:
        sock.close()
        raise ProxyTimeoutError(f"no CONNECT reply within {timeout:.1f} s") from None
    except BaseException:
        sock.close()
        raise


def _connect_request(target: str, port: int, username: str | None,
                     password: str | None) -> bytes:
    authority = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if username:
        basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {basic}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    # A byte at a time: the reply header is a few dozen bytes, and not one byte past its end
    # may be taken from the socket.
    head = bytearray()
    while not head.endswith(b"\r\n\r\n") and not head.endswith(b"\n\n"):
        byte = await loop.sock_recv(sock, 1)
        if not byte:
            raise ProxyError("the proxy closed the connection without answering CONNECT")
        head += byte
        if len(head) > MAX_REPLY_HEAD:
            raise ProxyError(f"CONNECT reply header longer than {MAX_REPLY_HEAD} bytes")
    return bytes(head)


def _status_line(head: bytes) -> list[str]:
    """["HTTP/1.1", "200", "Connection", "established"]: the reply's first line, split."""
    line = head.split(b"\n", 1)[0].decode("latin-1").strip()
    words = line.split()
    if not words or not words[0].startswith("HTTP/"):
        raise ProxyError(f"not an HTTP reply to CONNECT: {line[:100]}")
    return words


def _at(address: str, host: str) -> str:
    return "" if address == host else f" (at {address})"


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else "connection failed"
