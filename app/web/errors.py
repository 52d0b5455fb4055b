"""Every error is JSON that names the field and says what is wrong; never an HTML page."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
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


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def error_response(status: int, message: str, errors: list[dict] | None = None):
    body: dict = {"message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), status


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
        response, status = error_response(exc.code or 500, http_error_message(exc))
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if database_unavailable(exc):
            # One line, no traceback: during an outage every request lands here. The driver's
            # message carries no row values (engines are built with hide_parameters).
            cause = getattr(exc, "orig", None) or exc
            log.warning("database unavailable: %s: %s", type(cause).__name__,
                        str(cause).strip().splitlines()[0] if str(cause).strip() else "")
            response, status = error_response(
                503, "database: temporarily unavailable; retry in a few seconds")
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
            return response, status
        log.exception("unhandled error")
        return error_response(500, "internal error; the request was not processed")
