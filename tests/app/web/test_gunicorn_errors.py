"""What gunicorn refuses before the app runs is JSON too: a real gunicorn, started as the
Procfile starts it, and raw sockets."""

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from app.devserver import free_port, wait_for_port
from app.web.gunicorn_worker import error_response
from tests.app.web.error_shape import assert_error_shape
from tests.servers.web import procfile_web

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


@pytest.fixture
def web(env):
    port = free_port()
    # One worker and few threads: the Procfile's command with its variables turned down.
    run_env = {**os.environ, **env, "PORT": str(port), "WEB_CONCURRENCY": "1",
               "WEB_THREADS": "2"}
    process = subprocess.Popen(["bash", "-c", f"exec {procfile_web()}"], cwd=ROOT,
                               env=run_env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process, "gunicorn")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


REFUSED = {
    "5,000-character path": (get("/v1/email-accounts/" + "a" * 5000), 414, "path:"),
    "request line of 4,095 bytes": (get("/" + "q" * 4100), 414, "path:"),
    "one header of 9,000 bytes": (get("/healthz", "X-Big: " + "b" * 9000), 431, "headers:"),
    "too many headers": (get("/healthz", *(f"X-H{i}: v" for i in range(200))), 431,
                         "headers:"),
    "header without a colon": (get("/healthz", "no colon here"), 400, "headers:"),
    "header name with a space": (get("/healthz", "Bad Name: v"), 400, "headers:"),
    "malformed request line": (b"GARBAGE\r\n\r\n", 400, ""),
    "unknown HTTP version": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400, "version:"),
    "lower-case method": (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "method:"),
    "two different Content-Lengths": (b"POST /healthz HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]",
                                      400, "headers:"),
    "transfer coding without chunked": (b"POST /healthz HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: gzip\r\n\r\n", 400,
                                        "headers:"),
}


def test_every_refusal_gunicorn_makes_is_a_json_error(web):
    for name, (raw, status, field) in REFUSED.items():
        got, headers, body = exchange(web, raw)
        assert got == status, (name, got, body[:200])
        assert headers["content-type"] == "application/json", (name, headers)
        assert int(headers["content-length"]) == len(body), name
        assert_error_shape(json.loads(body))
        message = json.loads(body)["message"]
        assert message.startswith(field), (name, message)
        assert ":" in message, (name, message)


def test_the_app_still_answers_behind_the_worker(web):
    status, _, body = exchange(web, get("/healthz"))
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, _, body = exchange(web, get("/v1/email-accounts/connect/jobs"))
    assert status == 401 and json.loads(body)["message"].startswith("x-api-key:")


def test_error_response_is_well_formed_http():
    raw = error_response(b"HTTP/1.1 414 URI Too Long", 'path: "quoted" \u00fc')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert json.loads(body) == {"message": 'path: "quoted" \u00fc', "errors": [
        {"field": "path", "message": '"quoted" \u00fc'}]}
    assert f"Content-Length: {len(body)}".encode() in head


def test_a_refused_header_is_not_quoted_back(web):
    """The malformed header may be the caller's key; the answer never repeats it."""
    for raw in (get("/healthz", "x-api-key mc_SECRETKEYVALUE"),
                get("/healthz", "Authorization\x01: Bearer mc_SECRETKEYVALUE"),
                get("/healthz", "X-Big: mc_SECRETKEYVALUE" + "b" * 9000)):
        status, _, body = exchange(web, raw)
        assert status in (400, 431) and b"SECRETKEYVALUE" not in body, body[:200]
