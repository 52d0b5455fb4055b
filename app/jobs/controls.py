"""Steering a job after it was submitted: cancel it, retry its failed rows, list a team's jobs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, update

from app import metrics
from app.clock import Clock
from app.db import Database
from app.jobs.intake import JobOptions, SubmittedJob, new_job_id, save_job
from app.jobs.status import JobView, view_of
from app.models import TERMINAL_JOB_STATES, ConnectJob, ConnectJobRow, RowState

jobs = ConnectJob.__table__
rows = ConnectJobRow.__table__


class JobNotFound(LookupError):
    """No job with this requestId for this team."""


class JobEnded(Exception):
    """The job is already in a terminal state."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class JobNotEnded(Exception):
    """The job is still queued or running."""


class NothingToRetry(Exception):
    """The job has no failed rows (with the asked error codes)."""


@dataclass(frozen=True)
class Cancelled:
    rows: int  # rows this call took out of the queue
    job_finished: bool  # every row is final now: the job can be finished


def cancel_job(db: Database, clock: Clock, team_id: int, job_id: str) -> Cancelled:
    """Cancel every row not yet being tested, in one transaction. Rows being tested finish.

    The conditional update on the row's state means a runner's claim and the cancel never both
    win a row: whichever commits first has it, and the other's WHERE no longer matches."""
    now = clock.now()
    with db.transaction() as session:
        # FOR UPDATE: a finisher ending the job waits for this cancel, or this sees it ended.
        job = session.execute(
            select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.team_id == team_id)
            .with_for_update()
        ).one_or_none()
        if job is None:
            raise JobNotFound(job_id)
        if job.status in TERMINAL_JOB_STATES:
            raise JobEnded(job.status)
        taken = session.execute(
            update(rows)
            .where(rows.c.job_id == job_id,
                   rows.c.state.in_((RowState.PENDING, RowState.WAITING)))
            .values(state=RowState.CANCELLED, credentials=None, lease_expires_at=None,
                    wait_until=None, finished_at=now)
        ).rowcount
        processed, total = session.execute(
            update(jobs).where(jobs.c.id == job_id)
            .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, now),
                    cancelled=jobs.c.cancelled + taken, processed=jobs.c.processed + taken,
                    last_progress_at=now)
            .returning(jobs.c.processed, jobs.c.total)
        ).one()
    metrics.rows_finished("cancelled", taken)
    return Cancelled(rows=taken, job_finished=processed >= total)


def retry_failed_rows(db: Database, clock: Clock, team_id: int, job_id: str,
                      codes: Collection[str] | None = None,
                      options: JobOptions | None = None) -> SubmittedJob:
    """A new job (kind retry) of the ended job's failed rows, optionally only those with an
    error code in `codes`, with the callback and Idempotency-Key of `options`. Its rows carry
    only the account: the runner tests it with its stored settings and encrypted
    credentials, so nobody sends passwords again."""
    with db.reading() as session:
        status = session.scalar(
            select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.team_id == team_id))
        if status is None:
            raise JobNotFound(job_id)
        if status not in TERMINAL_JOB_STATES:
            raise JobNotEnded(status)
        # The report's errorCode of a failed row: SMTP's, else IMAP's.
        code = func.coalesce(rows.c.smtp_error_code, rows.c.imap_error_code)
        query = (select(rows.c.account_id, rows.c.email)
                 .where(rows.c.job_id == job_id, rows.c.state == RowState.DONE,
                        rows.c.account_status == 0, rows.c.account_id.is_not(None))
                 .order_by(rows.c.row_no))
        if codes:
            query = query.where(code.in_(sorted(codes)))
        failed = session.execute(query).all()
    accounts = dict(failed)  # one row per account, in the order of the first
    if not accounts:
        raise NothingToRetry(job_id)
    new_id = new_job_id()
    new_rows: list[dict[str, Any]] = [
        {"job_id": new_id, "row_no": row_no, "attempts": 0, "state": RowState.PENDING,
         "email": email, "account_id": account_id}
        for row_no, (account_id, email) in enumerate(accounts.items(), start=1)
    ]
    return save_job(db, clock.now(), new_id, team_id, new_rows, 0, (),
                    replace(options or JobOptions(), kind="retry", retry_of=job_id))


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobView]
    total: int


def list_jobs(db: Database, team_id: int, page: int, limit: int) -> JobPage:
    """The team's jobs, newest first."""
    with db.reading() as session:
        total = session.scalar(select(func.count()).select_from(jobs)
                               .where(jobs.c.team_id == team_id))
        found = session.execute(
            select(jobs).where(jobs.c.team_id == team_id)
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .offset((page - 1) * limit).limit(limit)
        ).all()
    return JobPage([view_of(row) for row in found], total or 0)
