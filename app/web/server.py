"""gunicorn settings that its flags cannot express: `gunicorn -c python:app.web.server ...`."""

from __future__ import annotations

import logging
import sys
from typing import Any

from app.config import load_settings

# gunicorn's threaded worker (what `--threads N` picks), but its own error pages are JSON too.
worker_class = "app.web.gunicorn_worker.JsonErrorWorker"


def on_starting(server: Any) -> None:
    # gunicorn sets up only its own loggers; without this the app's records reach a root
    # logger with no handler, so LOG_LEVEL had no effect and only warnings were printed.
    # Workers are forked from here and keep this handler.
    logging.basicConfig(
        level=load_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )


def post_worker_init(worker: Any) -> None:
    # Polls are short and many. With CPython's default 5 ms switch interval, a poll whose thread
    # wakes while another holds the GIL can wait that long, more than once; 0.5 ms keeps the
    # slowest polls near the typical one, at a small cost in throughput.
    sys.setswitchinterval(0.0005)


# gunicorn's default access line, with the path but not its query string: Smartlead's clients
# send their API key as `?api_key=`, and no key may reach a log.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
