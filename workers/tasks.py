"""Thin tasks: take ids, call the domain, publish follow-ups only after it has committed."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_shutting_down
from sqlalchemy.exc import OperationalError

from app.jobs.finish import fail_job, finish_job
from app.jobs.retention import apply_retention
from app.jobs.runner import runners_for
from app.jobs.runner import start_job as start_job_rows
from app.jobs.sweeper import sweep as sweep_jobs
from app.jobs.webhooks import WebhookPolicy, owed_webhooks
from app.jobs.webhooks import deliver_webhook as deliver_webhook_once
from app.storage import StorageError
from workers.factory import DELIVER_WEBHOOK, FINISH_JOB, PROBE_ROW, RUN_ROWS, START_JOB, SWEEP
from workers.runtime import Runtime, runtime

log = logging.getLogger(__name__)

# Backoff stays below the default visibility timeout; with a shorter one a retry may be
# redelivered early, which idempotent tasks make harmless.
TRANSIENT = {"autoretry_for": (OperationalError,), "retry_backoff": 2,
             "retry_backoff_max": 30, "max_retries": 8}


# Set on SIGTERM (a deploy): runners hand their work on instead of starting more rows.
_shutting_down = threading.Event()


@worker_shutting_down.connect
def _stop_taking_rows(**_kwargs) -> None:
    _shutting_down.set()


@shared_task(name=START_JOB, **TRANSIENT)
def start_job(job_id: str) -> None:
    rt = runtime()
    pending = len(start_job_rows(rt.services.db, rt.services.clock, job_id))
    rt.queue.run_rows(job_id, runners_for(pending, rt.services.settings.worker_concurrency))


@shared_task(name=RUN_ROWS, **TRANSIENT)
def run_rows(job_id: str) -> None:
    """A runner of the job: tests its next rows (see RowProcessor.run)."""
    rt = runtime()
    rt.rows.run(rt.queue, job_id=job_id, stopping=_shutting_down.is_set)


@shared_task(name=PROBE_ROW, **TRANSIENT)
def probe_row(row_id: int) -> None:
    """Start this row (woken from a host's waiting list, or its wait is over), then go on as
    a runner of its job."""
    rt = runtime()
    rt.rows.run(rt.queue, row_id=row_id, stopping=_shutting_down.is_set)


@shared_task(name=FINISH_JOB, bind=True, autoretry_for=(OperationalError, StorageError),
             retry_backoff=2, retry_backoff_max=30, max_retries=8)
def finish(self, job_id: str) -> None:
    rt = runtime()
    s = rt.services
    try:
        if not rt.bucket_ready:
            s.store.ensure_bucket()
            rt.bucket_ready = True
        ended = finish_job(s.db, s.clock, s.store, job_id)
    except StorageError as exc:
        if self.request.retries >= self.max_retries:
            ended = fail_job(s.db, s.clock, job_id, f"the report could not be stored: {exc}")
        else:
            raise
    if ended:
        rt.queue.deliver_webhook(job_id)  # returns at once when the job has no callback


@shared_task(name=DELIVER_WEBHOOK, **TRANSIENT)
def deliver_webhook(job_id: str) -> None:
    rt = runtime()
    s = rt.services
    delay = deliver_webhook_once(s.db, s.cipher, s.clock, s.store, _webhook_policy(rt), job_id)
    if delay is not None:
        rt.queue.deliver_webhook(job_id, delay)


def _webhook_policy(rt: Runtime) -> WebhookPolicy:
    settings = rt.services.settings
    return WebhookPolicy(
        timeout_seconds=settings.webhook_timeout_seconds,
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        # Every countdown stays far below the broker's visibility timeout.
        backoff_max_seconds=min(300.0, settings.broker_visibility_timeout / 4),
        allow_networks=settings.allow_networks,
        url_ttl_seconds=settings.report_url_ttl_seconds,
        retention_days=settings.job_retention_days,
    )


@shared_task(name=SWEEP, **TRANSIENT)
def sweep() -> None:
    rt = runtime()
    s = rt.services
    actions = sweep_jobs(s.db, s.clock, s.settings.job_stall_seconds,
                         s.settings.worker_concurrency)
    if actions.rows_revived or actions.runners or actions.jobs_to_start \
            or actions.jobs_to_finish:
        log.info("sweeper: %d rows back to pending, %d runners for %d jobs, starting %d jobs, "
                 "finishing %d jobs", actions.rows_revived, sum(actions.runners.values()),
                 len(actions.runners), len(actions.jobs_to_start), len(actions.jobs_to_finish))
    for job_id, runners in actions.runners.items():
        rt.queue.run_rows(job_id, runners)
    for job_id in actions.jobs_to_start:
        rt.queue.start_job(job_id)
    for job_id in actions.jobs_to_finish:
        rt.queue.finish_job(job_id)
    apply_retention(s.db, s.clock, s.store, s.settings.job_retention_days)
    for job_id in owed_webhooks(s.db, s.clock, _webhook_policy(rt)):
        rt.queue.deliver_webhook(job_id)
