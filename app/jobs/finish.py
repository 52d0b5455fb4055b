"""Finishing a job: build the report, upload it, then mark the job completed. Idempotent."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy import func, select, update

from app.clock import Clock
from app.db import Database
from app.jobs.report import write_report
from app.models import ConnectJob, JobStatus
from app.storage import ReportStore

log = logging.getLogger(__name__)
jobs = ConnectJob.__table__
OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)


def report_key(team_id: int, job_id: str) -> str:
    return f"reports/{team_id}/{job_id}.csv"


def finish_job(db: Database, clock: Clock, store: ReportStore, job_id: str) -> bool:
    """Returns True when this call completed the job."""
    with db.reading() as session:
        job = session.execute(
            select(jobs.c.team_id, jobs.c.status, jobs.c.processed, jobs.c.total)
            .where(jobs.c.id == job_id)
        ).one_or_none()
    if job is None or job.status not in OPEN or job.processed < job.total:
        return False
    key = report_key(job.team_id, job_id)
    with tempfile.TemporaryDirectory(prefix="mailconnect-report-") as tmp:
        path = Path(tmp) / f"{job_id}.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            count = write_report(db, job_id, out)
        store.upload_file(key, path, "text/csv")
    now = clock.now()
    with db.transaction() as session:
        completed = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(OPEN))
            .values(status=JobStatus.COMPLETED, completed_at=now, report_key=key,
                    started_at=func.coalesce(jobs.c.started_at, now))
        ).rowcount
    log.info("job %s finished: %d report rows at %s", job_id, count, key)
    return bool(completed)


def fail_job(db: Database, clock: Clock, job_id: str, reason: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(OPEN))
            .values(status=JobStatus.FAILED, completed_at=clock.now(), error=reason)
        )
