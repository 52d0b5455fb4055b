"""A client byte stream with line reads and an in-place TLS upgrade.

Built on a bare asyncio Protocol rather than StreamReader because STARTTLS must know whether any
bytes arrived after the server's "go ahead": such bytes are plaintext a man in the middle could
have injected (CVE-2011-0411), and StreamReader does not say how much it has buffered.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, cast

from app.probe.errors import ConnectionClosed, LineTooLong

# RFC 5321 caps reply lines at 512 octets and IMAP lines are rarely longer than a few KiB
# (CAPABILITY); 64 KiB keeps a hostile server from making us buffer without bound.
DEFAULT_LINE_LIMIT = 64 * 1024


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, limit: int) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.lost: BaseException | None = None
        self._limit = limit
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not a check: uvloop's transports implement asyncio.Transport's methods
        # without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > self._limit and self.transport and not self._paused:
            # Stop reading so a flood cannot grow the buffer; readline reports LineTooLong.
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # let the transport close itself

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.lost = exc
        self._wake()

    def consumed(self) -> None:
        if self._paused and len(self.buffer) <= self._limit and self.transport:
            self._paused = False
            self.transport.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class MailStream:
    """One TCP connection, optionally upgraded to TLS, read line by line."""

    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol, limit: int) -> None:
        self._transport = transport
        self._protocol = protocol
        self._limit = limit
        self.tls = False

    @classmethod
    async def open(cls, ip: str, port: int, *, limit: int = DEFAULT_LINE_LIMIT) -> MailStream:
        return await cls._create(limit, host=ip, port=port)

    @classmethod
    async def over(cls, sock: socket.socket, *, limit: int = DEFAULT_LINE_LIMIT) -> MailStream:
        """On a socket that is already connected, such as a proxy's tunnel; owns it from now."""
        try:
            return await cls._create(limit, sock=sock)
        except BaseException:
            sock.close()
            raise

    @classmethod
    async def _create(cls, limit: int, **where: Any) -> MailStream:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(lambda: _StreamProtocol(limit), **where)
        return cls(cast(asyncio.Transport, transport), protocol, limit)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet read."""
        return len(self._protocol.buffer)

    async def wait_readable(self) -> None:
        """Return once at least one byte (or EOF) has arrived, without consuming anything."""
        while not self._protocol.buffer and not self._protocol.eof:
            await self._protocol.wait()

    async def readline(self) -> bytes:
        """One line without its CRLF (a bare LF is tolerated)."""
        proto = self._protocol
        while True:
            end = proto.buffer.find(b"\n")
            if end >= 0:
                line = bytes(proto.buffer[: end + 1])
                del proto.buffer[: end + 1]
                proto.consumed()
                return line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if len(proto.buffer) > self._limit:
                raise LineTooLong(f"reply line longer than {self._limit} bytes")
            if proto.eof:
                raise self._closed()
            await proto.wait()

    async def readexactly(self, count: int) -> bytes:
        proto = self._protocol
        if count > self._limit:
            raise LineTooLong(f"literal of {count} bytes is longer than {self._limit}")
        while len(proto.buffer) < count:
            if proto.eof:
                raise self._closed()
            await proto.wait()
        data = bytes(proto.buffer[:count])
        del proto.buffer[:count]
        proto.consumed()
        return data

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise self._closed()
        self._transport.write(data)

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Upgrade in place; the caller has checked that nothing is buffered."""
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            self._transport, self._protocol, context, server_hostname=server_hostname
        )
        self._transport = self._protocol.transport = cast(asyncio.Transport, transport)
        self.tls = True

    def abort(self) -> None:
        # abort, not close: a graceful TLS close waits up to 30 s for the peer's close_notify,
        # and the verdict is already known when we get here.
        self._transport.abort()

    def _closed(self) -> ConnectionClosed:
        lost = self._protocol.lost
        if lost is not None:
            return ConnectionClosed(f"connection lost: {type(lost).__name__}: {lost}")
        return ConnectionClosed("server closed the connection")
