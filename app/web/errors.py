"""Every error is JSON in one shape, and never an HTML page:

    {"message": "field: what is wrong", "errors": [{"row"?: 1, "field": "...", "message": "..."}]}

`errors` always has at least one entry naming a field. Raise sites say "field: what is wrong"
(the convention every message here already followed); the entry is derived from that text, so
a new raise site needs nothing more. Validation with several bad fields passes its entries.
Some answers add keys of their own (errorCode, retryAfter, category, limit, hosts): the
documented model (`ErrorBody`) lists them and allows more.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, jsonify
from flask.wrappers import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

# What a client is told to wait when the database cannot be reached: about one reconnect try
# of the pool, short enough that a poller notices the database is back within seconds.
DATABASE_RETRY_AFTER_SECONDS = 5


class ErrorEntry(BaseModel):
    """One thing wrong with the request, named by the field the client sent."""

    # Optional without `| None`: it is left out rather than sent as null.
    row: int = Field(None, ge=1, description="the 1-based row of a bulk body the error is in")
    field: str = Field(min_length=1, description="the field as the client sent it, e.g. "
                                                 "`payload.smtp.port`, `smtpPort`, `x-api-key`")
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the API (4xx and 5xx)."""

    model_config = ConfigDict(extra="allow")

    message: str = Field(description="every entry in one readable line: `field: what is wrong`")
    errors: list[ErrorEntry] = Field(min_length=1)
    errorCode: str = Field(None, description="rate_limited, team_login_quota or host_busy")
    retryAfter: int = Field(None, description="seconds to wait; also the Retry-After header")
    category: str = Field(None, description="the rate limit's category (rate_limited)")
    limit: str = Field(None, description="the rate limit broken, e.g. `10 per 1 minute`")
    hosts: list[str] = Field(None, description="the hosts without a free test slot (host_busy)")


class ApiError(Exception):
    """`message` is "field: what is wrong"; `errors` the entries when there are several (or
    a row), else derived from the message."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


# "field: what is wrong". A field is short and has no sentence punctuation: `smtpPort`,
# `payload.smtp.port`, `[3].smtpPort`, `Content-Type`, `request line`.
_FIELD_MESSAGE = re.compile(r"(?P<field>[\w.\[\]\- ]{1,100}?): (?P<message>.+)", re.DOTALL)
_ROW_PATH = re.compile(r"\[(?P<index>\d{1,9})\]\.?(?P<rest>.*)", re.DOTALL)


def error_entry(message: str) -> dict[str, Any]:
    """The entry of a "field: what is wrong" message. A path into a JSON array,
    `[3].smtpPort`, is row 4's `smtpPort` (rows count from 1, as in the report)."""
    match = _FIELD_MESSAGE.fullmatch(message)
    if match is None:
        return {"field": "request", "message": message}
    field, text = match["field"], match["message"]
    row = _ROW_PATH.fullmatch(field)
    if row is not None:
        return {"row": int(row["index"]) + 1, "field": row["rest"] or "row", "message": text}
    return {"field": field, "message": text}


def error_body(message: str, errors: list[dict] | None = None, **extra: Any) -> dict[str, Any]:
    """The documented error shape, checked against its model (a raise site that broke it
    would be a bug to see in tests, not a surprise for clients)."""
    body = ErrorBody(message=message, errors=errors or [error_entry(message)], **extra)
    return body.model_dump(exclude_none=True)


def error_response(status: int, message: str, errors: list[dict] | None = None,
                   retry_after: int | None = None, **extra: Any) -> Response:
    response = jsonify(error_body(message, errors, **extra))
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def database_unavailable(exc: BaseException) -> bool:
    """True when the database could not be reached or dropped the connection, as opposed to
    a bug in a statement: the request may succeed if it is simply sent again later."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    # OperationalError is the DB-API's class for "the database, not the statement": refused or
    # lost connections, a server shutting down, SQLite's busy timeout. InterfaceError is a
    # connection the driver already considers closed.
    return exc.connection_invalidated or isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError)


# What werkzeug's own refusals are about, named like every other error: "field: what is wrong".
_HTTP_ERROR_FIELDS: dict[type[HTTPException], str] = {
    NotFound: "path",
    MethodNotAllowed: "method",
    UnsupportedMediaType: "Content-Type",
    BadRequest: "body",
}


def http_error_message(exc: HTTPException) -> str:
    field = next((name for kind, name in _HTTP_ERROR_FIELDS.items() if isinstance(exc, kind)),
                 "request")
    return f"{field}: {exc.description or exc.name}"


INTERNAL_ERROR = "internal error; the request was not processed"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.errors)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(413, f"body: is larger than the limit of {limit} bytes")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        response = error_response(exc.code or 500, http_error_message(exc))
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if database_unavailable(exc):
            # One line, no traceback: during an outage every request lands here. The driver's
            # message carries no row values (engines are built with hide_parameters).
            cause = getattr(exc, "orig", None) or exc
            log.warning("database unavailable: %s: %s", type(cause).__name__,
                        str(cause).strip().splitlines()[0] if str(cause).strip() else "")
            return error_response(503, "database: temporarily unavailable; retry in a few "
                                       "seconds", retry_after=DATABASE_RETRY_AFTER_SECONDS)
        log.exception("unhandled error")
        return error_response(500, INTERNAL_ERROR)
