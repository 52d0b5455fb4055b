"""Retention: a finished job's files and any stored row credentials go after
JOB_RETENTION_DAYS; its counters, rows and the accounts stay. Batched and idempotent, so the
sweeper can call it every time and a crash halfway only leaves work for the next call.
Deleted accounts are remembered only while a connect submitted before the deletion may still
finish."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from app.clock import Clock
from app.db import Database
from app.jobs.idempotency import delete_expired_keys
from app.models import TERMINAL_JOB_STATES, AccountDeletion, ConnectJob, ConnectJobRow
from app.oauth.consent import delete_expired_consents
from app.storage import ReportStore

log = logging.getLogger(__name__)
jobs = ConnectJob.__table__
rows = ConnectJobRow.__table__
deletions = AccountDeletion.__table__
# A single connect lasts minutes: an hour covers one submitted just before a deletion.
DELETION_MEMORY = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Retention:
    jobs_expired: int
    keys_deleted: int
    consents_deleted: int = 0
    deletions_forgotten: int = 0


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
    forgotten = forget_deletions(db, clock)
    if expired or keys or consents or forgotten:
        log.info("retention: files of %d jobs deleted, %d idempotency keys, %d expired "
                 "OAuth consents and %d account deletions forgotten",
                 expired, keys, consents, forgotten)
    return Retention(jobs_expired=expired, keys_deleted=keys, consents_deleted=consents,
                     deletions_forgotten=forgotten)


def forget_deletions(db: Database, clock: Clock) -> int:
    """Forget account deletions no unfinished connect can predate: older than an hour and
    than every unfinished job."""
    with db.transaction() as session:
        cutoff = clock.now() - DELETION_MEMORY
        oldest_unfinished = session.scalar(
            select(func.min(jobs.c.created_at))
            .where(jobs.c.status.not_in(sorted(TERMINAL_JOB_STATES))))
        if oldest_unfinished is not None:
            cutoff = min(cutoff, oldest_unfinished)
        return session.execute(delete(deletions).where(deletions.c.deleted_at < cutoff)
                               ).rowcount


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
