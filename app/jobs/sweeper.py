"""The sweeper repairs what crashes and lost messages leave behind.

- a testing row whose lease expired (its worker died mid-test) goes back to pending;
- a waiting row whose wait_until passed (the message or waiting list that should have woken
  it was lost) goes back to pending;
- the running jobs of those rows get a few `run_rows` runners, never one message per row;
- a running job with no progress for JOB_STALL_SECONDS and rows still pending gets runners
  (their messages were lost, e.g. prefetched by a worker that was killed, or Redis emptied);
- a queued job nobody started is started; a job whose rows are all final is finished.
Every action is idempotent on the worker side, so a repeated message costs nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import exists, select, update

from app.clock import Clock
from app.db import Database
from app.jobs.runner import ROWS_PER_RUNNER, runners_for
from app.models import ConnectJob, ConnectJobRow, JobStatus, RowState

rows = ConnectJobRow.__table__
jobs = ConnectJob.__table__
OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass
class SweepActions:
    runners: dict[str, int] = field(default_factory=dict)  # job id: run_rows messages
    jobs_to_start: list[str] = field(default_factory=list)
    jobs_to_finish: list[str] = field(default_factory=list)
    rows_revived: int = 0


def sweep(db: Database, clock: Clock, stall_seconds: int, concurrency: int,
          limit: int = 10_000) -> SweepActions:
    """What to publish: found, and the rows moved back to pending, in one transaction.

    `concurrency` is a worker's thread count: a job whose rows came back gets up to a tenth of
    it in runners (each tests ten rows and announces its successor), and a stalled job as
    many as a fresh start would.
    """
    now = clock.now()
    quiet_since = now - dt.timedelta(seconds=stall_seconds)
    actions = SweepActions()
    revived: Counter[str] = Counter()
    with db.transaction() as session:
        for state, deadline, cleared in (
            (RowState.TESTING, rows.c.lease_expires_at, {"lease_expires_at": None}),
            (RowState.WAITING, rows.c.wait_until, {"wait_until": None}),
        ):
            due = (select(rows.c.id).where(rows.c.state == state, deadline < now)
                   .order_by(rows.c.id).limit(limit))
            # The state is checked again, so a row claimed meanwhile is left alone.
            revived.update(session.scalars(
                update(rows).where(rows.c.id.in_(due), rows.c.state == state)
                .values(state=RowState.PENDING, **cleared)
                .returning(rows.c.job_id)
            ))
        actions.rows_revived = sum(revived.values())
        if revived:
            running = set(session.scalars(
                select(jobs.c.id)
                .where(jobs.c.id.in_(list(revived)), jobs.c.status == JobStatus.RUNNING)
            ))
            per_job = max(1, concurrency // ROWS_PER_RUNNER)
            actions.runners = {job: min(count, per_job) for job, count in revived.items()
                               if job in running}
        quiet = session.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.processed, jobs.c.total)
            .where(jobs.c.status.in_(OPEN), jobs.c.last_progress_at < quiet_since)
        ).all()
        for job in quiet:
            if job.processed >= job.total:
                actions.jobs_to_finish.append(job.id)
            elif job.status == JobStatus.QUEUED:
                actions.jobs_to_start.append(job.id)
            elif session.scalar(select(exists().where(rows.c.job_id == job.id,
                                                      rows.c.state == RowState.PENDING))):
                # Nothing runs this job any more: as many runners as a start would announce
                # for what is left (rows testing or waiting have their own way back).
                actions.runners[job.id] = max(actions.runners.get(job.id, 0), runners_for(
                    job.total - job.processed, concurrency, ROWS_PER_RUNNER))
        if quiet:
            # Start the quiet clock again, so the next sweep does not re-announce the same jobs.
            session.execute(
                update(jobs).where(jobs.c.id.in_([j.id for j in quiet]))
                .values(last_progress_at=now)
            )
    return actions
