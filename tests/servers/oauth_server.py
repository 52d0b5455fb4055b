"""A local OAuth2 authorisation server's token endpoint, standing in for Google's and
Microsoft's: refresh_token grants (RFC 6749 section 6), rotating refresh tokens, revocation
(then `invalid_grant`, as a provider answers once consent is withdrawn)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class OAuthServer:
    client_id: str = "client-1"
    client_secret: str = "client-secret-1"
    expires_in: int = 3600
    rotate: bool = True
    # refresh token -> the mailbox it was issued for; revoked ones are removed.
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)  # access tokens, in order
    requests: int = 0
    status_override: int | None = None  # answer every request with this status (an outage)
    url: str = ""
    # Issues the access token for a mailbox: e.g. the Dovecot test server's introspection
    # registry, so that the mail server accepts what this endpoint hands out.
    mint: Callable[[str], str] | None = None

    def grant(self, email: str) -> str:
        """A refresh token for this mailbox, as a consent would give."""
        token = "rt-" + secrets.token_urlsafe(12)
        self.refresh_tokens[token] = email
        return token

    def revoke(self, email: str) -> None:
        self.refresh_tokens = {t: e for t, e in self.refresh_tokens.items() if e != email}

    def answer(self, form: dict[str, str]) -> tuple[int, dict]:
        self.requests += 1
        if self.status_override is not None:
            return self.status_override, {"error": "temporarily_unavailable"}
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                   self.client_secret):
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        email = self.refresh_tokens.get(form.get("refresh_token", ""))
        if email is None:
            return 400, {"error": "invalid_grant", "error_description":
                         f"AADSTS70000: the refresh token {form.get('refresh_token')} was "
                         "revoked or consent was withdrawn"}
        access = self.mint(email) if self.mint else "at-" + secrets.token_urlsafe(16)
        self.issued.append(access)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        if self.rotate:
            del self.refresh_tokens[form["refresh_token"]]
            body["refresh_token"] = self.grant(email)
        return 200, body


@contextmanager
def running_oauth_server(server: OAuthServer | None = None) -> Iterator[OAuthServer]:
    state = server or OAuthServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, body = state.answer(form)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
