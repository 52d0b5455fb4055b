"""OAuth2 token introspection (RFC 7662-style) for Dovecot's `oauth2` passdb in the tests.

Dovecot POSTs the form `token=<access token>` to `url`; the answer is
`{"active": true, "email": <owner>}` for a token minted here and not revoked, else
`{"active": false}`. Tests mint and revoke tokens while Dovecot runs:

    with introspection_server() as tokens:
        token = tokens.mint("alice@example.test")
        ... log in with XOAUTH2 ...
        tokens.revoke(token)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

INTROSPECT_PATH = "/introspect"
_MAX_BODY = 64 * 1024


class IntrospectionServer:
    """The token registry and where Dovecot asks about it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()
        self.asked = 0  # introspection requests answered: proves Dovecot asked us

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{INTROSPECT_PATH}"

    def mint(self, email: str) -> str:
        token = "tok-" + secrets.token_urlsafe(24)
        with self._lock:
            self._owners[token] = email
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._owners.pop(token, None)

    def owner(self, token: str) -> str | None:
        with self._lock:
            self.asked += 1
            return self._owners.get(token)


def _handler(registry: IntrospectionServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != INTROSPECT_PATH:
                self._answer(404, {"error": "not_found"})
                return
            length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            token = (form.get("token") or [""])[0]
            email = registry.owner(token) if token else None
            self._answer(200, {"active": True, "email": email} if email else {"active": False})

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: a line per Dovecot login would drown the test output

    return Handler


@contextlib.contextmanager
def introspection_server(host: str = "127.0.0.1") -> Iterator[IntrospectionServer]:
    """Serve introspection on a free loopback port for the block."""
    registry = IntrospectionServer(host, 0)
    httpd = ThreadingHTTPServer((host, 0), _handler(registry))
    httpd.daemon_threads = True
    registry.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="introspection", daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
