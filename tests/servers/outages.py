"""Outages a test can switch on and off: a Redis that restarts empty, and a TCP gate in front
of a server (PostgreSQL) that refuses new connections and cuts the open ones."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.devserver import free_port, redis_server_binary, wait_for_port


class RestartableRedis:
    """A private redis-server on a fixed loopback port that keeps nothing on disk, so a restart
    comes back empty: every queued and unacknowledged message is gone, as when a broker without
    persistence is replaced."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self._process, "redis-server")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()  # no SHUTDOWN: nothing is saved, like a lost machine
        if self._process is not None:
            self._process.wait(timeout=10)

    def restart_empty(self) -> None:
        self.stop()
        self.start()


@contextmanager
def restartable_redis(workdir: Path) -> Iterator[RestartableRedis]:
    redis = RestartableRedis(workdir)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class TcpGate:
    """A loopback TCP proxy to target_port. `close()` stops listening (new connections are
    refused) and resets every open connection; `open()` listens on the same port again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        self._transports.add(client_writer.transport)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._transports.add(server_writer.transport)
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer),
                                 self._pipe(server_reader, client_writer))
        finally:
            self._transports.discard(client_writer.transport)
            self._transports.discard(server_writer.transport)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True, backlog=512)

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # RST, as when the server's host goes away
        self._transports.clear()

    def _call(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def open(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._shut())

    def __enter__(self) -> TcpGate:
        self._thread.start()
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
