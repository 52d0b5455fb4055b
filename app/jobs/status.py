"""What a poll sees: counters read from the job row, never counted from its rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from app.db import Database
from app.models import ConnectJob, JobStatus

jobs = ConnectJob.__table__


@dataclass(frozen=True)
class JobView:
    job_id: str
    status: str
    total: int
    processed: int
    succeeded: int
    failed: int
    invalid: int
    ignored_columns: list[str]
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    report_key: str | None
    error: str | None

    @property
    def is_completed(self) -> bool:
        return self.status == JobStatus.COMPLETED

    @property
    def progress(self) -> float:
        return round(100.0 * self.processed / self.total, 1) if self.total else 100.0


_TEAM_JOB = select(jobs).where(jobs.c.id == bindparam("job_id"),
                               jobs.c.team_id == bindparam("team_id"))


def job_view(db: Database, team_id: int, job_id: str) -> JobView | None:
    # Polled many times a second by every waiting client: a prebuilt statement, no ORM.
    with db.core_reading() as connection:
        row = connection.execute(_TEAM_JOB, {"job_id": job_id, "team_id": team_id}
                                 ).one_or_none()
    if row is None:
        return None
    return JobView(
        job_id=row.id, status=row.status, total=row.total, processed=row.processed,
        succeeded=row.succeeded, failed=row.failed, invalid=row.invalid,
        ignored_columns=row.ignored_columns or [], created_at=row.created_at,
        started_at=row.started_at, completed_at=row.completed_at, report_key=row.report_key,
        error=row.error,
    )
