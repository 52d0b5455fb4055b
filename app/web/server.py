"""gunicorn settings that its flags cannot express: `gunicorn -c python:app.web.server ...`."""

from __future__ import annotations

import sys
from typing import Any

from app import metrics
from app.config import load_settings
from app.logs import gunicorn_logconfig

_settings = load_settings()

# gunicorn's threaded worker (what `--threads N` picks), but its own error pages are JSON too.
worker_class = "app.web.gunicorn_worker.JsonErrorWorker"

# gunicorn's own lines (errors, access log) and the app's go through one root handler in
# LOG_FORMAT, at LOG_LEVEL. Without it the app's records reached a root logger with no
# handler, so only warnings were printed. Workers are forked from the master and keep it.
logconfig_dict = gunicorn_logconfig(_settings.log_level, _settings.log_format)


def on_starting(server: Any) -> None:
    # Several worker processes each count what they serve; /metrics adds up every process of
    # this machine (Celery workers too) from files in one directory. Set in the master before
    # the app (and so prometheus_client) is imported: the forked workers inherit it.
    metrics.prepare_multiprocess(_settings.metrics_dir)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges must leave the sum; its counters stay.
    metrics.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    # Polls are short and many. With CPython's default 5 ms switch interval, a poll whose thread
    # wakes while another holds the GIL can wait that long, more than once; 0.5 ms keeps the
    # slowest polls near the typical one, at a small cost in throughput.
    sys.setswitchinterval(0.0005)
    # gunicorn's "Booting worker" comes at the fork, seconds before the app is imported; this
    # line says when the worker can serve.
    worker.log.info("Worker %s loaded the app and is serving", worker.pid)


# gunicorn's default access line, with the path but not its query string: Smartlead's clients
# send their API key as `?api_key=`, and no key may reach a log.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
