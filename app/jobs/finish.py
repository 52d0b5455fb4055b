"""Finishing a job: build the report (and the failed-rows file), upload them, then mark the job
ended. Idempotent: only the call that moves the job out of an open state counts."""

from __future__ import annotations

import logging
import secrets
import tempfile
from pathlib import Path

from sqlalchemy import case, func, select, update

from app.clock import Clock
from app.db import Database
from app.jobs.csvsafe import CONTENT_TYPE as CSV_CONTENT_TYPE
from app.jobs.failed_rows import FailedRowsWriter, failed_rows_key
from app.jobs.report import write_report
from app.models import ConnectJob, JobStatus
from app.storage import ReportStore

log = logging.getLogger(__name__)
jobs = ConnectJob.__table__
OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)
# A job someone asked to cancel ends cancelled, even if its last rows were tested meanwhile.
_ENDED = case((jobs.c.cancel_requested_at.is_not(None), JobStatus.CANCELLED.value),
              else_=JobStatus.COMPLETED.value)
# A job with somewhere to report to owes it a webhook from the moment it ends.
_WEBHOOK_OWED = case((jobs.c.callback_url.is_not(None), "pending"), else_=None)


def report_key(team_id: int, job_id: str) -> str:
    # The requestId travels to webhooks, logs and browsers; the random part keeps the object's
    # name unguessable from it, should the bucket ever be exposed by a policy mistake.
    return f"reports/{team_id}/{job_id}-{secrets.token_urlsafe(16)}.csv"


def finish_job(db: Database, clock: Clock, store: ReportStore, job_id: str) -> bool:
    """Returns True when this call ended the job (completed, or cancelled if asked)."""
    with db.reading() as session:
        job = session.execute(
            select(jobs.c.team_id, jobs.c.status, jobs.c.processed, jobs.c.total)
            .where(jobs.c.id == job_id)
        ).one_or_none()
    if job is None or job.status not in OPEN or job.processed < job.total:
        return False
    key = report_key(job.team_id, job_id)
    failed_key = None
    with tempfile.TemporaryDirectory(prefix="mailconnect-report-") as tmp:
        path, failed_path = Path(tmp) / f"{job_id}.csv", Path(tmp) / f"{job_id}-failed.csv"
        with path.open("w", newline="", encoding="utf-8") as out, \
                failed_path.open("w", newline="", encoding="utf-8") as failed_out:
            failed = FailedRowsWriter(db, job.team_id, failed_out)
            count = write_report(db, job_id, out, also=failed)
        store.upload_file(key, path, CSV_CONTENT_TYPE)
        if failed.count:
            failed_key = failed_rows_key(job.team_id, job_id)
            store.upload_file(failed_key, failed_path, CSV_CONTENT_TYPE)
    now = clock.now()
    with db.transaction() as session:
        ended = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(OPEN))
            .values(status=_ENDED, completed_at=now, report_key=key,
                    failed_rows_key=failed_key, webhook_state=_WEBHOOK_OWED,
                    started_at=func.coalesce(jobs.c.started_at, now))
        ).rowcount
    if not ended:  # another finisher won; its own files are the ones linked
        for orphan in filter(None, (key, failed_key)):
            store.delete(orphan)
    log.info("job %s finished: %d report rows at %s, %d failed rows", job_id, count, key,
             failed.count)
    return bool(ended)


def fail_job(db: Database, clock: Clock, job_id: str, reason: str) -> bool:
    """End the job failed with the reason; True when this call ended it."""
    with db.transaction() as session:
        return bool(session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(OPEN))
            .values(status=JobStatus.FAILED, completed_at=clock.now(), error=reason,
                    webhook_state=_WEBHOOK_OWED)
        ).rowcount)
