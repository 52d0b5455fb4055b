"""The counting proxy in its own process: it relays bytes both ways, counts sessions the way
the benchmarks read them (at accept; until the client closes), in the kernel's order, and
leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.servers.counting_proxy import counting_proxy_process

FAREWELL = b"QUIT\r\n"
GOODBYE = b"221 bye\r\n"


class _Echo(socketserver.BaseRequestHandler):
    """Echoes until its client's EOF; answers FAREWELL with GOODBYE and closes first, as an
    SMTP server does after QUIT."""

    def handle(self) -> None:
        while data := self.request.recv(65536):
            if data == FAREWELL:
                self.request.sendall(GOODBYE)
                return
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def connect(port: int) -> socket.socket:
    """A session through the proxy, proved relayed both ways (so also accepted and counted)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    echo(sock, b"hello")
    return sock


def echo(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {len(received)} of {len(payload)} bytes"
        received += chunk
    assert received == payload


def test_counts_sessions_while_their_clients_hold_them(echo_port):
    with counting_proxy_process(echo_port, until_client_closes=True) as proxy:
        a, b, c = (connect(proxy.port) for _ in range(3))
        assert (proxy.current, proxy.peak, proxy.total) == (3, 3, 3)

        a.close()
        wait_for(lambda: proxy.current == 2, f"the closed session uncounted: {proxy}")
        assert (proxy.peak, proxy.total) == (3, 3)

        # The server ends the session (221, then its close): the client sees the EOF, but it
        # still holds its socket, so the session still counts until it closes it.
        b.sendall(FAREWELL)
        assert b.recv(100) == GOODBYE
        assert b.recv(100) == b""
        assert proxy.current == 2
        b.close()
        wait_for(lambda: proxy.current == 1, f"the client's close uncounted: {proxy}")

        d = connect(proxy.port)
        assert (proxy.current, proxy.peak, proxy.total) == (2, 3, 4)
        # A reset counts as a close as much as a FIN does.
        d.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        d.close()
        wait_for(lambda: proxy.current == 1, f"the reset session uncounted: {proxy}")
        c.close()
        wait_for(lambda: proxy.current == 0, f"every session uncounted: {proxy}")
    assert (proxy.current, proxy.peak, proxy.total) == (0, 3, 4)


def test_a_close_delivered_before_an_accept_is_retired_first(echo_port):
    """While the proxy is stopped the kernel queues, in this order: W's handshake, X's FIN, Z's
    handshake. Resumed, the proxy's loop sees the listener ready before X's socket, and one
    accept pass takes W and Z; counted as the callbacks run, Z would make a 5th session that
    never existed. W did overlap X, so 4 is the true peak."""
    with counting_proxy_process(echo_port, until_client_closes=True) as proxy:
        a, b, x = (connect(proxy.port) for _ in range(3))
        os.kill(proxy.pid, signal.SIGSTOP)
        try:
            w = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            x.close()
            z = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        finally:
            os.kill(proxy.pid, signal.SIGCONT)
        for sock in (w, z):
            echo(sock, b"after")
        assert (proxy.current, proxy.peak, proxy.total) == (4, 4, 5), proxy
        for sock in (a, b, w, z):
            sock.close()


def test_delays_reads_and_relays_a_large_payload_intact(echo_port):
    payload = os.urandom(2 * 1024 * 1024)  # more than the socket buffers: back pressure
    with counting_proxy_process(echo_port, delay_seconds=0.002) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
        received = bytearray()

        def read() -> None:
            while len(received) < len(payload) and (chunk := sock.recv(65536)):
                received.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        sock.sendall(payload)
        reader.join(timeout=60)
        assert bytes(received) == payload
        assert (proxy.current, proxy.total) == (1, 1)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b"", "the server's EOF, relayed"
        # Without until_client_closes a session counts until the relay closed both sides.
        wait_for(lambda: proxy.current == 0, f"the finished session uncounted: {proxy}")
        sock.close()


def test_a_refused_target_closes_the_client_and_uncounts(echo_port):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refusing_port = unused.getsockname()[1]  # bound, never listening: refused
        with counting_proxy_process(refusing_port, until_client_closes=True) as proxy:
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            assert sock.recv(100) == b""
            wait_for(lambda: proxy.current == 0, f"the refused session uncounted: {proxy}")
            assert proxy.total == 1
            sock.close()


def test_stops_its_process_and_keeps_the_last_figures(echo_port):
    with counting_proxy_process(echo_port, until_client_closes=True) as proxy:
        held = connect(proxy.port)
        pid = proxy.pid
    # Stopped with a session still held: the figures are those at the stop, and stay.
    assert (proxy.current, proxy.peak, proxy.total) == (1, 1, 1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped: nothing left behind
    held.settimeout(10)
    assert held.recv(100) == b"", "the proxy closed its sessions as it stopped"
    held.close()
