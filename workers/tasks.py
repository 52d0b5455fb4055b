"""Thin tasks: take ids, call the domain, publish follow-ups only after it has committed."""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.jobs.finish import fail_job, finish_job
from app.jobs.runner import runners_for
from app.jobs.runner import start_job as start_job_rows
from app.jobs.sweeper import sweep as sweep_jobs
from app.storage import StorageError
from workers.factory import FINISH_JOB, PROBE_ROW, RUN_ROWS, START_JOB, SWEEP
from workers.runtime import runtime

log = logging.getLogger(__name__)

# Backoff stays far below the broker's visibility timeout (at least 60 s, see Settings).
TRANSIENT = {"autoretry_for": (OperationalError,), "retry_backoff": 2,
             "retry_backoff_max": 30, "max_retries": 8}


@shared_task(name=START_JOB, **TRANSIENT)
def start_job(job_id: str) -> None:
    rt = runtime()
    pending = len(start_job_rows(rt.services.db, rt.services.clock, job_id))
    rt.queue.run_rows(job_id, runners_for(pending, rt.services.settings.worker_concurrency))


@shared_task(name=RUN_ROWS, **TRANSIENT)
def run_rows(job_id: str) -> None:
    """A runner of the job: tests its next rows (see RowProcessor.run)."""
    rt = runtime()
    rt.rows.run(rt.queue, job_id=job_id)


@shared_task(name=PROBE_ROW, **TRANSIENT)
def probe_row(row_id: int) -> None:
    """Start this row (woken from a host's waiting list, or its wait is over), then go on as
    a runner of its job."""
    rt = runtime()
    rt.rows.run(rt.queue, row_id=row_id)


@shared_task(name=FINISH_JOB, bind=True, autoretry_for=(OperationalError, StorageError),
             retry_backoff=2, retry_backoff_max=30, max_retries=8)
def finish(self, job_id: str) -> None:
    rt = runtime()
    s = rt.services
    try:
        if not rt.bucket_ready:
            s.store.ensure_bucket()
            rt.bucket_ready = True
        finish_job(s.db, s.clock, s.store, job_id)
    except StorageError as exc:
        if self.request.retries >= self.max_retries:
            fail_job(s.db, s.clock, job_id, f"the report could not be stored: {exc}")
            return
        raise


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
