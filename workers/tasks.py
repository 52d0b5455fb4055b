"""Thin tasks: take ids, call the domain, publish follow-ups only after it has committed."""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.jobs.finish import fail_job, finish_job
from app.jobs.retention import apply_retention
from app.jobs.runner import RowOutcome, runners_for
from app.jobs.runner import start_job as start_job_rows
from app.jobs.sweeper import sweep as sweep_jobs
from app.jobs.webhooks import WebhookPolicy, owed_webhooks
from app.jobs.webhooks import deliver_webhook as deliver_webhook_once
from app.storage import StorageError
from workers.factory import DELIVER_WEBHOOK, FINISH_JOB, PROBE_ROW, RUN_ROWS, START_JOB, SWEEP
from workers.runtime import Runtime, runtime

log = logging.getLogger(__name__)

# Backoff stays far below the broker's visibility timeout (at least 60 s, see Settings).
TRANSIENT = {"autoretry_for": (OperationalError,), "retry_backoff": 2,
             "retry_backoff_max": 30, "max_retries": 8}
# One run_rows message tests up to this many of its job's rows, one after another: a tenth of
# the per-message broker work, while a slow row holds up at most nine others of its runner.
ROWS_PER_RUNNER = 10


@shared_task(name=START_JOB, **TRANSIENT)
def start_job(job_id: str) -> None:
    rt = runtime()
    pending = len(start_job_rows(rt.services.db, rt.services.clock, job_id))
    rt.queue.run_rows(job_id, runners_for(pending, rt.services.settings.worker_concurrency,
                                          ROWS_PER_RUNNER))


@shared_task(name=RUN_ROWS, **TRANSIENT)
def run_rows(job_id: str) -> None:
    rt = runtime()
    for _ in range(ROWS_PER_RUNNER):
        outcome = rt.rows.process_next(job_id)
        if outcome is None:
            return
        _follow_up(rt, outcome)


@shared_task(name=PROBE_ROW, **TRANSIENT)
def probe_row(row_id: int) -> None:
    rt = runtime()
    _follow_up(rt, rt.rows.process(row_id))


def _follow_up(rt: Runtime, outcome: RowOutcome) -> None:
    if outcome.retry_in is not None and outcome.row_id is not None:
        rt.queue.probe_row_later(outcome.row_id, outcome.retry_in)
    if outcome.job_finished:
        rt.queue.finish_job(outcome.job_id)


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
    actions = sweep_jobs(s.db, s.clock, s.settings.job_stall_seconds)
    if actions.rows_to_probe or actions.jobs_to_start or actions.jobs_to_finish:
        log.info("sweeper: re-queuing %d rows, starting %d jobs, finishing %d jobs",
                 len(actions.rows_to_probe), len(actions.jobs_to_start),
                 len(actions.jobs_to_finish))
    rt.queue.probe_rows(actions.rows_to_probe)
    for job_id in actions.jobs_to_start:
        rt.queue.start_job(job_id)
    for job_id in actions.jobs_to_finish:
        rt.queue.finish_job(job_id)
    apply_retention(s.db, s.clock, s.store, s.settings.job_retention_days)
    for job_id in owed_webhooks(s.db, s.clock, _webhook_policy(rt)):
        rt.queue.deliver_webhook(job_id)
