"""The sweeper repairs what crashes and lost messages leave behind.

- a row whose lease expired (its worker died mid-test) is handed out again;
- a running job with no progress for JOB_STALL_SECONDS has its pending rows re-announced
  (their messages were lost, e.g. prefetched by a worker that was killed);
- a queued job nobody started is started; a job whose rows are all final is finished.
Every action is idempotent on the worker side, so a repeated message costs nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select, update

from app.clock import Clock
from app.db import Database
from app.models import ConnectJob, ConnectJobRow, JobStatus, RowState

rows = ConnectJobRow.__table__
jobs = ConnectJob.__table__
OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass
class SweepActions:
    rows_to_probe: list[int] = field(default_factory=list)
    jobs_to_start: list[str] = field(default_factory=list)
    jobs_to_finish: list[str] = field(default_factory=list)


def sweep(db: Database, clock: Clock, stall_seconds: int, limit: int = 10_000) -> SweepActions:
    now = clock.now()
    quiet_since = now - dt.timedelta(seconds=stall_seconds)
    actions = SweepActions()
    with db.transaction() as session:
        actions.rows_to_probe += session.scalars(
            select(rows.c.id)
            .where(rows.c.state == RowState.TESTING, rows.c.lease_expires_at < now)
            .order_by(rows.c.id).limit(limit)
        )
        quiet = session.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.processed, jobs.c.total)
            .where(jobs.c.status.in_(OPEN), jobs.c.last_progress_at < quiet_since)
        ).all()
        for job in quiet:
            if job.processed >= job.total:
                actions.jobs_to_finish.append(job.id)
            elif job.status == JobStatus.QUEUED:
                actions.jobs_to_start.append(job.id)
            else:
                actions.rows_to_probe += session.scalars(
                    select(rows.c.id)
                    .where(rows.c.job_id == job.id, rows.c.state == RowState.PENDING)
                    .order_by(rows.c.row_no).limit(limit)
                )
        if quiet:
            # Start the quiet clock again, so the next sweep does not re-announce the same rows.
            session.execute(
                update(jobs).where(jobs.c.id.in_([j.id for j in quiet]))
                .values(last_progress_at=now)
            )
    return actions
