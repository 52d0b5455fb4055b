"""Process hooks for worker and beat: logging, log context and metrics (connected by
workers.celery_app, which only worker and beat processes import)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import celeryd_init, setup_logging, task_postrun, task_prerun, worker_ready

from app import logs, metrics
from app.config import load_settings
from workers.factory import DELIVER_WEBHOOK, FINISH_JOB, PROBE_ROW, RUN_ROWS, START_JOB

# What each task's first argument is, for its log lines.
_ID_ARGUMENT = {START_JOB: "request_id", RUN_ROWS: "request_id", FINISH_JOB: "request_id",
                DELIVER_WEBHOOK: "request_id", PROBE_ROW: "row_id"}
# The context token of each running task, by task id (a thread pool runs many at once; the
# token is only ever reset in the thread that set it, since prerun and postrun share it).
_tokens: dict[str, Any] = {}

log = logging.getLogger(__name__)


@setup_logging.connect
def _configure_logging(loglevel: Any = None, **_kwargs: Any) -> None:
    # Connecting this signal stops Celery from taking over the root logger. Worker and beat
    # log like the web: LOG_FORMAT, with the row's ids.
    settings = load_settings()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    logs.configure_logging(level or settings.log_level, settings.log_format)


@celeryd_init.connect
def _count_in_this_machines_directory(**_kwargs: Any) -> None:
    # Before the tasks run (and so before prometheus_client is imported): the worker's counts
    # go to the same directory as the web's on this machine, whose /metrics adds them up.
    metrics.prepare_multiprocess(load_settings().metrics_dir)
    metrics.install_prometheus()


@worker_ready.connect
def _serve_worker_metrics(**_kwargs: Any) -> None:
    # A worker on a machine without a web process is scraped on its own port.
    port = load_settings().worker_metrics_port
    if port:
        metrics.serve(port)
        log.info("metrics: serving /metrics on port %d", port)


@task_prerun.connect
def _enter_task_log_context(task_id: str | None = None, task: Any = None,
                            args: Any = None, **_kwargs: Any) -> None:
    field = _ID_ARGUMENT.get(getattr(task, "name", ""))
    if field and args and task_id:
        _tokens[task_id] = logs.enter(**{field: args[0]})


@task_postrun.connect
def _leave_task_log_context(task_id: str | None = None, **_kwargs: Any) -> None:
    token = _tokens.pop(task_id or "", None)
    if token is not None:
        logs.leave(token)
