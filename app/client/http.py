"""The service's HTTP API as the command-line client calls it.

The API key is held as a `Secret` and sent only to the service's own URL, never to the
presigned report links (they are another host's, and need no key). Every failure becomes a
`ServiceError` whose message is the server's own (it names the field) or says which request
could not be sent; the key is scrubbed from any text that reaches a message.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from app.credentials import Secret

DEFAULT_URL = "http://127.0.0.1:8000"
CONNECT = "/v1/email-accounts/connect"
# What a busy or briefly unavailable service is given before the command gives up: enough for
# a database restart or a rate-limit window, short enough that a script is not stuck.
MAX_ATTEMPTS = 8
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
TIMEOUT_SECONDS = 60.0
# Bulk connect answered 202 before Saleshandy's documented 200; both mean "accepted".
ACCEPTED = (200, 202)


class ServiceError(Exception):
    """A request the service refused or that could not be made. `status` is the HTTP status,
    or None when no answer came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A file's bytes and the content type the service reads them as."""

    content: bytes
    content_type: str

    @classmethod
    def of(cls, path: Path) -> Upload:
        content = path.read_bytes()
        suffix = path.suffix.lower()
        if suffix == ".json":
            return cls(content, "application/json")
        if suffix == ".csv":
            return cls(content, "text/csv")
        # No telling suffix: a JSON array starts with '[' (after a BOM or blanks); CSV never
        # does, as its first line is the header.
        head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        return cls(content, "application/json" if head == b"[" else "text/csv")


def retry_after(response: httpx.Response, fallback: float) -> float:
    """The wait the service asked for in Retry-After (seconds), else `fallback`."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return fallback
    return min(max(seconds, 0.0), MAX_BACKOFF_SECONDS)


class ServiceClient:
    """Calls to one mailconnect service with one API key."""

    def __init__(self, url: str, api_key: Secret, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.url = url.rstrip("/")
        self._key = api_key
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._answered = False  # has the service answered this client at all yet?
        self._http = httpx.Client(base_url=self.url, transport=transport,
                                  timeout=TIMEOUT_SECONDS, follow_redirects=False,
                                  headers={"Accept": "application/json",
                                           "User-Agent": "mailconnect-cli"})
        # Files come from presigned links on the report store: no key goes there.
        self._files = httpx.Client(transport=transport, timeout=TIMEOUT_SECONDS,
                                   follow_redirects=True)

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(self, upload: Upload) -> str:
        """POST the file as a bulk connect; returns its requestId."""
        # A fresh Idempotency-Key per file: when an answer is lost or refused with 503 and the
        # POST is sent again, the service replays the first job instead of making a second.
        headers = {"Content-Type": upload.content_type,
                   "Idempotency-Key": f"cli-{secrets.token_hex(16)}"}
        body = self._call("POST", CONNECT, ACCEPTED, content=upload.content, headers=headers)
        request_id = (body.get("payload") or {}).get("requestId")
        if not isinstance(request_id, str):
            raise ServiceError(f"POST {CONNECT}: the answer has no payload.requestId")
        return request_id

    def status(self, request_id: str) -> dict[str, Any]:
        """The job's status payload."""
        path = f"{CONNECT}/status/{quote(request_id, safe='')}"
        return self._payload(self._call("GET", path, (200,)), path)

    def accounts(self, *, page: int | None = None, limit: int | None = None,
                 status: int | None = None) -> dict[str, Any]:
        """One page of the team's accounts, with the API's own query parameters."""
        params = {name: value for name, value in
                  (("page", page), ("limit", limit), ("status", status)) if value is not None}
        path = "/v1/email-accounts"
        return self._payload(self._call("GET", path, (200,), params=params), path)

    def download(self, url: str, to: Path) -> Path:
        """Save a presigned file link's content at `to` (replacing it)."""
        try:
            response = self._files.get(url)
        except httpx.HTTPError as exc:
            raise ServiceError(f"download: {self._scrub(str(exc)) or type(exc).__name__}") \
                from None
        if response.status_code != 200:
            raise ServiceError(f"download: the report store answered {response.status_code}",
                               response.status_code)
        partial = to.with_name(to.name + ".part")
        partial.write_bytes(response.content)
        partial.replace(to)  # never leave half a report under the final name
        return to

    def _payload(self, body: dict[str, Any], path: str) -> dict[str, Any]:
        payload = body.get("payload")
        if not isinstance(payload, dict):
            raise ServiceError(f"GET {path}: the answer has no payload")
        return payload

    def _call(self, method: str, path: str, expected: tuple[int, ...],
              **kwargs: Any) -> dict[str, Any]:
        """Send, honouring Retry-After on 429 and 503 and backing off on lost connections,
        up to max_attempts; returns the JSON body of an expected answer.

        A service that has not answered once is not waited for (a wrong --url should fail at
        once); one that stops answering while a job is followed is (it may be restarting)."""
        headers = {**kwargs.pop("headers", {}), "x-api-key": self._key.reveal()}
        backoff = FIRST_BACKOFF_SECONDS
        for attempt in range(1, self._max_attempts + 1):
            last = attempt == self._max_attempts
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if last or not self._answered:
                    raise ServiceError(f"{method} {self.url}{path}: "
                                       f"{self._scrub(str(exc)) or type(exc).__name__}") \
                        from None
                self._sleep(backoff)
            else:
                self._answered = True
                if response.status_code in expected:
                    return self._json(response, method, path)
                if response.status_code not in (429, 503) or last:
                    raise ServiceError(f"{method} {path}: {response.status_code} "
                                       f"{self._error_message(response)}",
                                       response.status_code)
                self._sleep(retry_after(response, backoff))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _json(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServiceError(f"{method} {path}: the answer is not a JSON object",
                               response.status_code)
        return body

    def _error_message(self, response: httpx.Response) -> str:
        """The service's `message` (it names the field), else the start of the body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            text = body["message"]
            details = [f"{e.get('field')}: {e.get('message')}" for e in body.get("errors") or []
                       if isinstance(e, dict) and e.get("field") and
                       f"{e.get('field')}: {e.get('message')}" not in text]
            text = "; ".join([text, *details])
        else:
            text = response.text.strip()[:300] or response.reason_phrase
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        key = self._key.reveal()
        return text.replace(key, "********") if key else text
