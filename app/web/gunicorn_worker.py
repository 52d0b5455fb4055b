"""gunicorn's threaded worker, answering the errors gunicorn itself writes in JSON.

Requests gunicorn refuses before the app sees them (a request line over 4094 bytes, too many
or too long headers, a malformed request line or header) get an HTML page from
`Worker.handle_error`. This worker lets gunicorn decide the status, log and access-log as usual,
then sends the API's error shape instead (app/web/errors.py):
`{"message": "field: what is wrong", "errors": [{"field": ..., "message": ...}]}`.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from app.web.errors import INTERNAL_ERROR, error_body

# What each refusal is about, as the API's messages name a field.
_FIELDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (errors.LimitRequestLine, "path: the request line (method, path and query) is too long"),
    (errors.LimitRequestHeaders, "headers: too many or too large"),
    ((errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding),
     "headers: malformed"),
    (errors.InvalidRequestMethod, "method: not a valid HTTP method"),
    (errors.InvalidHTTPVersion, "version: not a supported HTTP version"),
    (errors.InvalidRequestLine, "request line: malformed"),
    ((errors.UnsupportedTransferCoding, errors.InvalidChunkSize,
      errors.ChunkMissingTerminator, errors.InvalidChunkExtension),
     "Transfer-Encoding: unsupported or malformed"),
    (errors.ExpectationFailed, "Expect: cannot be met"),
)


class JsonErrorWorker(ThreadWorker):
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # gunicorn picks the status and logs; its HTML page goes to a recorder, not the client.
        recorder = _StatusRecorder()
        super().handle_error(req, recorder, addr, exc)
        if recorder.status_line is None:
            return
        status = int(recorder.status_line.split(b" ", 2)[1])
        try:
            util.write_nonblock(client, error_response(recorder.status_line, _message(status, exc)))
        except Exception:  # noqa: BLE001 (the client is gone; gunicorn ignores this too)
            self.log.debug("Failed to send error message.")


def error_response(status_line: bytes, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying the API's JSON error body."""
    body = json.dumps(error_body(message)).encode()
    head = (status_line + b"\r\nConnection: close\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body))
    return head + body


# Header refusals quote the header, which may be the caller's API key or a Basic credential:
# the answer says what is wrong, never what was sent.
_QUOTES_HEADERS = (errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding,
                   errors.LimitRequestHeaders)


def _message(status: int, exc: BaseException) -> str:
    if status >= 500:
        return INTERNAL_ERROR
    for kinds, text in _FIELDS:
        if isinstance(exc, kinds):
            return text if isinstance(exc, _QUOTES_HEADERS) else f"{text} ({exc})"
    return "request: refused"


class _StatusRecorder:
    """Stands in for the client socket while gunicorn writes its page; keeps the status line."""

    def __init__(self) -> None:
        self.status_line: bytes | None = None

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, _flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.status_line = data.split(b"\r\n", 1)[0]

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)
