"""A local OAuth2 authorisation server's token endpoint, standing in for Google's and
Microsoft's: refresh_token grants (RFC 6749 section 6), rotating refresh tokens, revocation
(then `invalid_grant`, as a provider answers once consent is withdrawn), and
authorization_code grants with PKCE (RFC 7636). It has no consent page: a test plays the
browser and asks `authorize` for the code the provider would redirect with."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


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
    # code -> (mailbox, code_challenge, redirect_uri): single use, as RFC 6749 4.1.2 says.
    codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # Put the mailbox in an id_token's email claim, as Google and Microsoft do for `openid`.
    id_token: bool = True

    def authorize(self, authorize_url: str, email: str) -> str:
        """The code the consent page would give this mailbox for this authorisation URL."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert query["response_type"] == "code" and query["client_id"] == self.client_id
        assert query["code_challenge_method"] == "S256" and query["state"]
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = (email, query["code_challenge"], query["redirect_uri"])
        return code

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
        if form.get("grant_type") == "authorization_code":
            return self._code_grant(form)
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        email = self.refresh_tokens.get(form.get("refresh_token", ""))
        if email is None:
            return 400, {"error": "invalid_grant", "error_description":
                         f"AADSTS70000: the refresh token {form.get('refresh_token')} was "
                         "revoked or consent was withdrawn"}
        body = self._access(email)
        if self.rotate:
            del self.refresh_tokens[form["refresh_token"]]
            body["refresh_token"] = self.grant(email)
        return 200, body

    def _access(self, email: str) -> dict:
        access = self.mint(email) if self.mint else "at-" + secrets.token_urlsafe(16)
        self.issued.append(access)
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}

    def _code_grant(self, form: dict[str, str]) -> tuple[int, dict]:
        issued = self.codes.pop(form.get("code", ""), None)
        if issued is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        email, challenge, redirect_uri = issued
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
            return 400, {"error": "invalid_grant", "error_description":
                         "PKCE verification failed"}
        if form.get("redirect_uri") != redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        body = {**self._access(email), "refresh_token": self.grant(email)}
        if self.id_token:
            claims = base64.urlsafe_b64encode(json.dumps({"email": email}).encode())
            body["id_token"] = f"eyJhbGciOiJub25lIn0.{claims.rstrip(b'=').decode()}.sig"
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
