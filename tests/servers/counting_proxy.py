"""A TCP proxy that counts concurrent sessions to the server behind it, and can add latency
to every read so loopback costs what a real provider's round trip costs.

Two ways to run it, with one context-manager API:
- `counting_proxy`: a thread with an asyncio loop inside the calling process. Cheap to start,
  and what the pytest users need. But its loop shares the caller's GIL, and it counts a session
  only when the stream handler's task runs, three loop passes after the accept, while a close
  is seen one or two passes after the loop polls it. One accept pass takes every connection
  waiting by then, so a connection made after a close that the loop will only see at the next
  poll can be counted first: one more session than the client ever held.
- `counting_proxy_process`: the same proxy in a child process of its own (`python -m
  tests.servers.counting_proxy`), on uvloop. It counts a session synchronously at its
  accept(), and with `until_client_closes` retires it at the client's FIN or reset: before a
  new session is counted, every client close the kernel had delivered by the time that
  accept() returned is retired. So its peak is one the client really held (it can miss an
  overlap shorter than its own accept delay, never make one up). When the server closes
  first, it passes the EOF on as a half-close and keeps counting until the client closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import cast


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


# The proxy in a child process of its own. A subprocess running this module, not
# multiprocessing's "spawn": spawn re-imports the parent's main module in the child, and a
# benchmark's (tests.bench.scaleout imports the app, SQLAlchemy, pandas) costs about 5 s of
# CPU and 170 MB per proxy. This module imports only the standard library and uvloop.

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SessionFigures:
    """What a child-process proxy has counted, at one moment."""

    current: int
    peak: int
    total: int
    # How long the count first stayed at its peak, in seconds (None while it still does): an
    # excess over a cap that lasts microseconds is a close racing a connect, one that lasts a
    # probe's time is a slot given out twice.
    peak_lasted_s: float | None


class ProcessSessionCounter:
    """A child-process proxy's port and figures. Each figure is asked of the child over its
    pipe while it runs, so it is live; once the proxy stopped, it is the child's last answer."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.port = port
        self.pid = process.pid
        self._process = process
        self._lock = threading.Lock()
        self._final: SessionFigures | None = None

    @property
    def current(self) -> int:
        return self.figures().current

    @property
    def peak(self) -> int:
        return self.figures().peak

    @property
    def total(self) -> int:
        return self.figures().total

    @property
    def peak_lasted_s(self) -> float | None:
        return self.figures().peak_lasted_s

    def figures(self) -> SessionFigures:
        with self._lock:
            return self._final or self._ask("counts")

    def stop(self) -> SessionFigures:
        """Stop the child and keep its last figures (which no later close can change)."""
        with self._lock:
            if self._final is None:
                try:
                    self._final = self._ask("stop")
                finally:
                    self._end()
            return self._final

    def _ask(self, command: str) -> SessionFigures:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(f"{command}\n".encode())
            stdin.flush()
            line = stdout.readline()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe was closed already
            line = b""
        if not line:
            raise RuntimeError(f"the counting proxy has exited (code {self._process.poll()})")
        return SessionFigures(**json.loads(line))

    def _end(self) -> None:
        # The end of its stdin is the child's signal to exit, as when this process dies.
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)

    def __repr__(self) -> str:
        return f"ProcessSessionCounter(port={self.port}, {self.figures()})"


@contextmanager
def counting_proxy_process(target_port: int, target_host: str = "127.0.0.1",
                           delay_seconds: float = 0.0, until_client_closes: bool = False
                           ) -> Iterator[ProcessSessionCounter]:
    """`counting_proxy` (see there for `until_client_closes`) in a child process of its own,
    so that its counts depend neither on the caller's GIL nor on its loop's scheduling."""
    args = [sys.executable, "-m", "tests.servers.counting_proxy", "--target-host", target_host,
            "--target-port", str(target_port), "--delay-seconds", repr(delay_seconds)]
    if until_client_closes:
        args.append("--until-client-closes")
    process = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    counter = ProcessSessionCounter(process, _started_port(process))
    try:
        yield counter
    finally:
        counter.stop()


def _started_port(process: subprocess.Popen[bytes]) -> int:
    """The port the child announces on its first line; a child that does not is killed."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_SECONDS)
    line = process.stdout.readline() if ready else b""
    if line:
        return int(json.loads(line)["port"])
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"the counting proxy did not start (exit code {process.returncode})")


class _Half(asyncio.Protocol):
    """One socket of a relayed session; what it reads goes to the other one."""

    def __init__(self, session: _Session, is_client: bool) -> None:
        self.session = session
        self.is_client = is_client
        self.peer: _Half = self  # set by the session
        self.transport: asyncio.Transport | None = None
        # Bytes (None: the EOF) for the client while its transport is being made: the server
        # may greet before that.
        self.pending: list[bytes | None] = []
        self.read_eof = False
        self.eof_sent = False
        self.lost = False
        self._holds = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not a check: uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        pending, self.pending = self.pending, []
        for data in pending:
            self.send(data)

    def data_received(self, data: bytes) -> None:
        self.session.forward(self, data)

    def eof_received(self) -> bool:
        self.read_eof = True
        self.session.eof(self)
        return True  # half-closed: the other direction may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.session.lost(self, exc)

    # Back pressure: a full write buffer here stops reading on the other side.
    def pause_writing(self) -> None:
        self.peer.hold()

    def resume_writing(self) -> None:
        self.peer.unhold()

    def send(self, data: bytes | None) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            if data is None:
                self.transport.write_eof()
                self.eof_sent = True
                self.session.maybe_done()
            else:
                self.transport.write(data)

    def hold(self) -> None:
        self._holds += 1
        if self._holds == 1 and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def unhold(self) -> None:
        self._holds -= 1
        if self._holds == 0 and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()


class _Session:
    """One client connection and its connection to the target."""

    def __init__(self, proxy: _CountingProxy, client_fd: int) -> None:
        self.proxy = proxy
        self.client_fd = client_fd
        self.counted = False
        self.opening: asyncio.Task[None] | None = None  # held here: the loop keeps no reference
        self.client = _Half(self, is_client=True)
        self.server = _Half(self, is_client=False)
        self.client.peer, self.server.peer = self.server, self.client

    async def open(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.server, self.proxy.target_host,
                                         self.proxy.target_port)
            await loop.connect_accepted_socket(lambda: self.client, conn)
        except OSError:
            # Nothing to relay to: the client sees its connection closed. Released before
            # the close, so its descriptor leaves the close watch before it can be reused.
            self.server.abort()
            self.proxy.release(self)
            conn.close()
            self.proxy.finished(self)

    def forward(self, source: _Half, data: bytes | None) -> None:
        """What `source` read (None: its EOF) goes to the other side after the delay. A chunk
        in its delay holds `source`'s reading, so reads are delayed one after another, as the
        in-process proxy's are."""
        if self.proxy.delay_seconds:
            source.hold()
            self.proxy.loop.call_later(self.proxy.delay_seconds, self._deliver, source, data)
        else:
            source.peer.send(data)

    def _deliver(self, source: _Half, data: bytes | None) -> None:
        source.peer.send(data)
        source.unhold()

    def eof(self, half: _Half) -> None:
        if half.is_client and self.proxy.until_client_closes:
            self.proxy.release(self)
        self.forward(half, None)

    def maybe_done(self) -> None:
        """Both directions ended and their EOFs passed on: close both sockets."""
        if self.client.eof_sent and self.server.eof_sent:
            for half in (self.client, self.server):
                if half.transport is not None:
                    half.transport.close()

    def lost(self, half: _Half, exc: Exception | None) -> None:
        if half.is_client and self.proxy.until_client_closes:
            self.proxy.release(self)  # still open here: the descriptor closes after this
        done = self.client.eof_sent and self.server.eof_sent
        if not done:
            half.peer.abort()  # a reset (or a socket gone early) passes on to the other side
        if self.client.lost and self.server.lost:
            self.proxy.finished(self)

    def abort(self) -> None:
        self.client.abort()
        self.server.abort()


class _CountingProxy:
    """The child's proxy: counts at accept(), and (until_client_closes) uncounts at the
    client's FIN or reset, read from an epoll set of its own that watches every counted
    client socket for EPOLLRDHUP (FIN), EPOLLHUP and EPOLLERR (reset)."""

    def __init__(self, target_host: str, target_port: int, delay_seconds: float,
                 until_client_closes: bool) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay_seconds = delay_seconds
        self.until_client_closes = until_client_closes
        self.current = self.peak = self.total = 0
        self._peak_at = 0.0
        self._peak_lasted: float | None = None
        self._sessions: set[_Session] = set()
        self._watched: dict[int, _Session] = {}
        self._closes = select.epoll()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self._listener.fileno(), self._accept)
        if until_client_closes:
            # The watch set is itself pollable: a close is retired as soon as the kernel
            # delivers it, even while the relay holds that socket's reading for a delay.
            self.loop.add_reader(self._closes.fileno(), self._retire_closed)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of descriptors: the next readiness tries again
                print(f"counting proxy: accept failed: {exc}", file=sys.stderr, flush=True)
                return
            conn.setblocking(False)
            # Whatever order the loop would run the ready callbacks in, a client close the
            # kernel delivered before this accept() returned (so before this client's
            # connect completed) is retired before this session counts.
            self._retire_closed()
            session = _Session(self, conn.fileno())
            self._count(session)
            if self.until_client_closes:
                self._closes.register(conn.fileno(), select.EPOLLRDHUP)
                self._watched[conn.fileno()] = session
            self._sessions.add(session)
            session.opening = self.loop.create_task(session.open(conn))

    def _retire_closed(self) -> None:
        # Until none is left: release() unregisters each one polled.
        while events := self._closes.poll(0):
            for fd, _ in events:
                session = self._watched.get(fd)
                if session is not None:
                    self.release(session)
                else:
                    self._closes.unregister(fd)

    def _count(self, session: _Session) -> None:
        session.counted = True
        self.current += 1
        self.total += 1
        if self.current > self.peak:
            self.peak = self.current
            self._peak_at = time.perf_counter()
            self._peak_lasted = None

    def release(self, session: _Session) -> None:
        """Uncount a session (once), and stop watching its client socket."""
        if self._watched.get(session.client_fd) is session:
            del self._watched[session.client_fd]
            self._closes.unregister(session.client_fd)
        if not session.counted:
            return
        session.counted = False
        if self.current == self.peak and self._peak_lasted is None:
            self._peak_lasted = time.perf_counter() - self._peak_at
        self.current -= 1

    def finished(self, session: _Session) -> None:
        self.release(session)
        self._sessions.discard(session)

    def figures(self) -> dict[str, object]:
        return {"current": self.current, "peak": self.peak, "total": self.total,
                "peak_lasted_s": None if self._peak_lasted is None
                else round(self._peak_lasted, 6)}

    def stop(self) -> dict[str, object]:
        """Stop accepting; the figures as they stand, every close delivered so far retired;
        then every session aborted."""
        self.loop.remove_reader(self._listener.fileno())
        self._listener.close()
        self._retire_closed()
        figures = self.figures()
        if self.until_client_closes:
            self.loop.remove_reader(self._closes.fileno())
        for session in list(self._sessions):
            session.abort()
        return figures

    def close(self) -> None:
        """Once stopped: a session released after this has nothing to unwatch."""
        self._watched.clear()
        self._closes.close()


class _Control(asyncio.Protocol):
    """The parent's requests, one a line on stdin: `counts`, or `stop`, as is the end of stdin
    (the parent closed it, or died: the proxy never outlives it)."""

    def __init__(self, proxy: _CountingProxy, stopped: asyncio.Future[None]) -> None:
        self.proxy = proxy
        self.stopped = stopped
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            if line == b"counts":
                _answer(self.proxy.figures())
            elif line == b"stop":
                self._stop()
            else:
                print(f"counting proxy: unknown request {line!r}", file=sys.stderr, flush=True)

    def eof_received(self) -> None:
        self._stop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self.stopped.done():
            with suppress(BrokenPipeError):  # nobody left to read the last figures
                _answer(self.proxy.stop())
            self.stopped.set_result(None)


def _answer(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    proxy = _CountingProxy(args.target_host, args.target_port, args.delay_seconds,
                           args.until_client_closes)
    stopped: asyncio.Future[None] = loop.create_future()
    await loop.connect_read_pipe(lambda: _Control(proxy, stopped), sys.stdin)
    _answer({"port": proxy.port})
    await stopped
    # A pass of the loop, so the aborted sessions' connection_lost callbacks run before close.
    await asyncio.sleep(0)
    proxy.close()


def main(argv: list[str] | None = None) -> None:
    """The child: `counting_proxy_process` starts it; it prints its port as its first line."""
    import uvloop  # here, not at the top: the in-process users never need it

    parser = argparse.ArgumentParser()
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-seconds", type=float, default=0.0)
    parser.add_argument("--until-client-closes", action="store_true")
    uvloop.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
