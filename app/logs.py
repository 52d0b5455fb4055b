"""Logging for every process: one JSON object per line (LOG_FORMAT=json, the default) or
plain text (LOG_FORMAT=text, what `mailconnect dev` uses), at LOG_LEVEL.

Each line carries what it is about when that is known: `requestId` (the job), `rowId` and
`accountId`, from context variables that task adapters, web handlers and the row runner set
with `log_context`. Context variables follow each thread (and each asyncio task), so the
worker's concurrent threads never mix up their rows.

Nothing here adds a secret: messages are the ones the code writes, and those never carry a
password (server words are scrubbed in the probe before anything logs them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TextIO

# The names the API uses, so a requestId from a status URL finds its lines.
_FIELDS = {"request_id": "requestId", "row_id": "rowId", "account_id": "accountId"}
# Outside every log_context (compared by identity): never mutated, only replaced.
_OUTSIDE: dict[str, Any] = {}
_context: ContextVar[dict[str, Any]] = ContextVar("mailconnect_log_context", default=_OUTSIDE)

# The WSGI environ key under which a request's log context outlives the request, for
# gunicorn's access line (an environ atom, `{mailconnect.log_context}e`).
ACCESS_CONTEXT = "mailconnect.log_context"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s%(context)s"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within this block, log lines carry these fields (request_id, row_id, account_id); None
    leaves a field as the enclosing block set it."""
    token = enter(**fields)
    try:
        yield
    finally:
        leave(token)


def enter(**fields: Any) -> Token[dict[str, Any]]:
    """`log_context` for code that cannot wrap a block (a web request's before and teardown
    hooks): pass the token to `leave`."""
    given = {_FIELDS[name]: value for name, value in fields.items() if value is not None}
    return _context.set({**_context.get(), **given})


def leave(token: Token[dict[str, Any]]) -> None:
    _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context until the enclosing `log_context` ends (e.g. the
    account id, once the row's result has saved it). Outside any, nothing: the fields would
    otherwise stick to the thread and label whatever it logs next."""
    if _context.get() is _OUTSIDE:
        return
    given = {_FIELDS[name]: value for name, value in fields.items() if value is not None}
    _context.set({**_context.get(), **given})


def current_context() -> dict[str, Any]:
    return dict(_context.get())


def _record_context(record: logging.LogRecord) -> dict[str, Any]:
    # gunicorn writes its access line after the request's context ended: the ids the request
    # named or learnt (a new job's requestId) come from the environ the web app left them in.
    if record.name == "gunicorn.access" and isinstance(record.args, dict):
        left = record.args.get(f"{{{ACCESS_CONTEXT}}}e")
        if isinstance(left, dict):
            return left
    return _context.get()


class ContextFilter(logging.Filter):
    """Puts the context on each record, so both formatters (and any handler) can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _record_context(record)
        record.mailconnect = context
        record.context = "".join(f" {k}={v}" for k, v in context.items())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        event.update(getattr(record, "mailconnect", None) or _record_context(record))
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            event.update(_access_fields(record.args))
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "context"):
            record.context = ""
        return super().format(record)


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    # gunicorn's access atoms: the path without its query string (which may hold a vendor
    # dialect's api_key), the status and the time taken.
    fields = {"method": atoms.get("m"), "path": atoms.get("U"), "status": atoms.get("s"),
              "durationMs": round(int(atoms.get("D", 0) or 0) / 1000, 1)}
    return {name: value for name, value in fields.items() if value not in (None, "-")}


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


_HANDLER_MARK = "_mailconnect_handler"


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger's one handler, for web, worker and beat alike (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    handler.addFilter(ContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())


def gunicorn_logconfig(level: str, log_format: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access loggers go through the root handler,
    so its lines have the same format as the app's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"app": {"()": formatter_for, "log_format": log_format}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "app",
                                 "filters": ["context"], "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }
