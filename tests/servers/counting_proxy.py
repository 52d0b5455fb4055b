"""A TCP proxy that counts concurrent sessions to the server behind it, and can add latency
to every read so loopback costs what a real provider's round trip costs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class SessionCounter:
    port: int = 0
    current: int = 0
    peak: int = 0
    total: int = 0


@contextmanager
def counting_proxy(target_port: int, target_host: str = "127.0.0.1",
                   delay_seconds: float = 0.0, until_client_closes: bool = False
                   ) -> Iterator[SessionCounter]:
    """`until_client_closes`: a session counts while its client keeps it open, not until the
    relay has closed both sides too (which lags the client by the added latency): put such a
    proxy, without delay, in front of a delaying one to count what the client holds."""
    counter = SessionCounter()
    loop = asyncio.new_event_loop()
    lock = threading.Lock()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if delay_seconds:
                    await asyncio.sleep(delay_seconds)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer) -> None:
        with lock:
            counter.current += 1
            counter.total += 1
            counter.peak = max(counter.peak, counter.current)
        counted = [True]

        def uncount() -> None:
            with lock:
                if counted[0]:
                    counter.current -= 1
                    counted[0] = False

        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
            down = asyncio.ensure_future(pipe(server_reader, client_writer))
            await pipe(client_reader, server_writer)
            if until_client_closes:
                uncount()
            await down
        except ConnectionError:
            client_writer.close()
        finally:
            uncount()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)

    server = loop.run_until_complete(start())
    counter.port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
