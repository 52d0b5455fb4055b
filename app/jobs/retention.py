"""Retention: a finished job's files and any stored row credentials go after
JOB_RETENTION_DAYS; its counters, rows and the accounts stay. Batched and idempotent, so the
sweeper can call it every time and a crash halfway only leaves work for the next call."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from app.clock import Clock
from app.db import Database
from app.jobs.idempotency import delete_expired_keys
from app.models import TERMINAL_JOB_STATES, ConnectJob, ConnectJobRow
from app.oauth.consent import delete_expired_consents
from app.storage import ReportStore

log = logging.getLogger(__name__)
jobs = ConnectJob.__table__
rows = ConnectJobRow.__table__


@dataclass(frozen=True)
class Retention:
    jobs_expired: int
    keys_deleted: int
    consents_deleted: int = 0


def apply_retention(db: Database, clock: Clock, store: ReportStore, retention_days: float,
                    batch: int = 100, max_batches: int = 10) -> Retention:
    """Expire old jobs' files, at most batch * max_batches jobs per call (the sweep stays
    short), and forget idempotency keys older than 24 hours and expired OAuth consents."""
    expired = 0
    for _ in range(max_batches):
        done = _expire_batch(db, clock, store, retention_days, batch)
        expired += done
        if done < batch:
            break
    keys = delete_expired_keys(db, clock)
    consents = delete_expired_consents(db, clock)
    if expired or keys or consents:
        log.info("retention: files of %d jobs deleted, %d idempotency keys and %d expired "
                 "OAuth consents forgotten", expired, keys, consents)
    return Retention(jobs_expired=expired, keys_deleted=keys, consents_deleted=consents)


def _expire_batch(db: Database, clock: Clock, store: ReportStore, retention_days: float,
                  batch: int) -> int:
    now = clock.now()
    cutoff = now - dt.timedelta(days=retention_days)
    with db.reading() as session:
        due = session.execute(
            select(jobs.c.id, jobs.c.report_key, jobs.c.failed_rows_key)
            .where(jobs.c.status.in_(sorted(TERMINAL_JOB_STATES)),
                   jobs.c.completed_at < cutoff, jobs.c.files_expired_at.is_(None))
            .order_by(jobs.c.completed_at, jobs.c.id).limit(batch)
        ).all()
    if not due:
        return 0
    # Objects first: if this stops halfway, the jobs are still due and the deletes repeat.
    for job in due:
        for key in (job.report_key, job.failed_rows_key):
            if key:
                store.delete(key)
    ids = [job.id for job in due]
    with db.transaction() as session:
        session.execute(update(rows).where(rows.c.job_id.in_(ids),
                                           rows.c.credentials.is_not(None))
                        .values(credentials=None))
        session.execute(update(jobs).where(jobs.c.id.in_(ids)).values(files_expired_at=now))
    return len(ids)
