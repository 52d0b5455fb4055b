"""What a poll sees: counters read from the job row, never counted from its rows.

The same payload is the body of the job's webhook, so both are built here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, select

from app.clock import Clock
from app.db import Database
from app.jobs.loginquota import TEAM_LOGIN_QUOTA
from app.models import TERMINAL_JOB_STATES, ConnectJob, JobErrorCount, JobStatus
from app.storage import ReportStore

jobs = ConnectJob.__table__
error_counts = JobErrorCount.__table__

REPORT_EXPIRED_MESSAGE = ("The report and the failed-rows file of this job were deleted "
                          "{days:g} days after it ended (JOB_RETENTION_DAYS); the accounts "
                          "are kept.")


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
    kind: str = "connect"
    retry_of: str | None = None
    cancelled: int = 0
    failed_rows_key: str | None = None
    files_expired_at: dt.datetime | None = None
    cancel_requested_at: dt.datetime | None = None
    callback_url: str | None = None
    webhook_state: str | None = None
    webhook_attempts: int = 0
    webhook_error: str | None = None
    webhook_delivered_at: dt.datetime | None = None
    errors_by_code: dict[str, int] | None = None
    quota_wait_until: dt.datetime | None = None

    @property
    def is_completed(self) -> bool:
        return self.status in TERMINAL_JOB_STATES

    @property
    def progress(self) -> float:
        return round(100.0 * self.processed / self.total, 1) if self.total else 100.0

    def eta_seconds(self, now: dt.datetime) -> int | None:
        """Remaining rows at the rate tested so far; None until there is a rate."""
        if self.status != JobStatus.RUNNING or self.started_at is None:
            return None
        tested = self.processed - self.invalid - self.cancelled
        elapsed = (now - self.started_at).total_seconds()
        if tested <= 0 or elapsed <= 0:
            return None
        return round((self.total - self.processed) * elapsed / tested)

    def waiting(self, now: dt.datetime) -> dict[str, Any] | None:
        """What holds the job's rows back, while something does: the team's login quota."""
        if self.status != JobStatus.RUNNING or self.quota_wait_until is None \
                or self.quota_wait_until <= now:
            return None
        # Every row not yet final waits for the quota: a runner that finds the team out of
        # quota parks the job's pending rows, and a row woken meanwhile is parked again.
        return {"reason": TEAM_LOGIN_QUOTA, "resumesAt": iso(self.quota_wait_until),
                "rows": self.total - self.processed}


# The job's row and its error counts in one statement, so a poll is one round trip (and the
# counters and the counts by code come from one snapshot): one result row per code, the job's
# columns repeated, or one row with a null code when no row has failed yet.
_JOB_AND_COUNTS = (
    select(jobs, error_counts.c.code.label("error_code"),
           error_counts.c.count.label("error_count"))
    .outerjoin(error_counts, and_(error_counts.c.job_id == jobs.c.id, error_counts.c.count > 0))
    .where(jobs.c.id == bindparam("job_id"), jobs.c.team_id == bindparam("team_id"))
    .order_by(error_counts.c.code)
)


def job_view(db: Database, team_id: int, job_id: str) -> JobView | None:
    # Polled many times a second by every waiting client: one prebuilt statement, no ORM.
    with db.core_reading() as connection:
        found = connection.execute(_JOB_AND_COUNTS, {"job_id": job_id, "team_id": team_id}
                                   ).all()
    if not found:
        return None
    counts = {row.error_code: row.error_count for row in found if row.error_code is not None}
    return view_of(found[0], counts)


def view_of(row: Any, errors_by_code: dict[str, int] | None = None) -> JobView:
    """A JobView of a connect_jobs row (all its columns)."""
    return JobView(
        job_id=row.id, status=row.status, total=row.total, processed=row.processed,
        succeeded=row.succeeded, failed=row.failed, invalid=row.invalid,
        ignored_columns=row.ignored_columns or [], created_at=row.created_at,
        started_at=row.started_at, completed_at=row.completed_at, report_key=row.report_key,
        error=row.error, kind=row.kind, retry_of=row.retry_of, cancelled=row.cancelled,
        failed_rows_key=row.failed_rows_key, files_expired_at=row.files_expired_at,
        cancel_requested_at=row.cancel_requested_at, callback_url=row.callback_url,
        webhook_state=row.webhook_state, webhook_attempts=row.webhook_attempts,
        webhook_error=row.webhook_error, webhook_delivered_at=row.webhook_delivered_at,
        errors_by_code=errors_by_code, quota_wait_until=row.quota_wait_until,
    )


def status_payload(view: JobView, store: ReportStore, clock: Clock, url_ttl_seconds: int,
                   retention_days: float) -> dict[str, Any]:
    """The status endpoint's payload (and the webhook's body). Raises StorageError when the
    store cannot sign the links."""
    now = clock.now()
    report_url = failed_rows_url = expires_at = None
    expired = view.files_expired_at is not None
    if view.is_completed and not expired:
        if view.report_key:
            report_url = store.download_url(view.report_key, url_ttl_seconds)
        if view.failed_rows_key:
            failed_rows_url = store.download_url(view.failed_rows_key, url_ttl_seconds)
        if report_url:
            expires_at = now + dt.timedelta(seconds=url_ttl_seconds)
    return {
        "requestId": view.job_id,
        "kind": view.kind,
        "retryOf": view.retry_of,
        "status": view.status,
        "isCompleted": view.is_completed,
        **counters(view),
        "progress": view.progress,
        "etaSeconds": view.eta_seconds(now),
        "waiting": view.waiting(now),
        "errorsByCode": view.errors_by_code or {},
        "ignoredColumns": view.ignored_columns,
        "error": view.error,
        "createdAt": iso(view.created_at),
        "startedAt": iso(view.started_at),
        "completedAt": iso(view.completed_at),
        "cancelRequestedAt": iso(view.cancel_requested_at),
        "reportURL": report_url,
        "failedRowsURL": failed_rows_url,
        "reportExpiresAt": iso(expires_at),
        "reportExpired": expired,
        "reportExpiredMessage": (REPORT_EXPIRED_MESSAGE.format(days=retention_days)
                                 if expired else None),
        "webhook": None if view.callback_url is None else {
            "state": view.webhook_state,
            "attempts": view.webhook_attempts,
            "error": view.webhook_error,
            "deliveredAt": iso(view.webhook_delivered_at),
        },
    }


def counters(view: JobView) -> dict[str, int]:
    return {"total": view.total, "processed": view.processed, "succeeded": view.succeeded,
            "failed": view.failed, "invalid": view.invalid, "cancelled": view.cancelled}


def job_summary(view: JobView) -> dict[str, Any]:
    """A job as the list of a team's jobs shows it."""
    return {"requestId": view.job_id, "kind": view.kind, "status": view.status,
            "isCompleted": view.is_completed, **counters(view),
            "createdAt": iso(view.created_at), "completedAt": iso(view.completed_at)}


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
