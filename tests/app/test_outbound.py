import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.config import load_settings
from app.outbound import OutboundError, checked_addresses, http_request

LOOPBACK = load_settings(PROBE_ALLOW_NETWORKS="127.0.0.0/8").allow_networks


@contextmanager
def http_server(handle, host: str = "127.0.0.1") -> Iterator[int]:
    """A real HTTP server on a loopback address; handle(handler) answers each GET."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            handle(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None):
    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return handle


def resolving(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"{host}: not found")
        return table[host]
    return resolve


def test_a_get_connects_to_the_checked_address_not_the_name():
    with http_server(answer(200, b"hello", {"X-Thing": "1"})) as port:
        got = http_request("GET", f"http://config.example.test:{port}/path?q=1", timeout=3,
                           allow=LOOPBACK,
                           resolve=resolving({"config.example.test": ["127.0.0.1"]}))
    assert (got.status, got.body, got.headers["x-thing"]) == (200, b"hello", "1")


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "192.168.1.5", "127.0.0.1",
                                     "::ffff:10.0.0.7"])
def test_a_name_resolving_to_a_non_public_address_is_refused_before_any_connection(address):
    with pytest.raises(OutboundError) as refused:
        checked_addresses("sneaky.example.test", 80, resolve=resolving(
            {"sneaky.example.test": ["93.184.216.34", address]}))
    assert refused.value.blocked and "host_blocked" in str(refused.value)


def test_an_ip_literal_is_checked_too():
    with pytest.raises(OutboundError) as refused:
        http_request("GET", "http://169.254.169.254/latest/meta-data/", timeout=1)
    assert refused.value.blocked


def test_an_answer_over_the_size_cap_is_refused_or_cut():
    with http_server(answer(200, b"x" * 5000)) as port:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(OutboundError, match="larger than 1000 bytes"):
            http_request("GET", url, timeout=3, allow=LOOPBACK, max_bytes=1000)
        cut = http_request("GET", url, timeout=3, allow=LOOPBACK, max_bytes=1000, truncate=True)
    assert (cut.status, len(cut.body)) == (200, 1000)


def test_redirects_are_returned_not_followed():
    with http_server(answer(302, headers={"Location": "http://10.0.0.7/"})) as port:
        got = http_request("GET", f"http://127.0.0.1:{port}/", timeout=3, allow=LOOPBACK)
    assert (got.status, got.headers["location"]) == (302, "http://10.0.0.7/")


@contextmanager
def dripping_server() -> Iterator[int]:
    """Accepts, then sends a valid but endless header one byte at a time: each read is quick,
    so only a limit on the whole exchange ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.is_set():
                    conn.sendall(b"a")
                    time.sleep(0.05)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def test_the_time_limit_bounds_the_whole_answer_not_each_read():
    with dripping_server() as port, pytest.raises(OutboundError, match="timed out"):
        http_request("GET", f"http://127.0.0.1:{port}/", timeout=0.5, allow=LOOPBACK)
