"""Running a job's rows: start, claim with a lease, probe, record the result with counters.

A row moves pending -> testing -> done. The claim is a conditional update that also bumps
`attempts`; the result is written only if the row is still ours (same attempt), so a worker
that lost its lease to the sweeper cannot double-count.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from app.accounts.saving import upsert_tested_account
from app.clock import Clock
from app.credentials import CredentialCipher, CredentialError
from app.db import Database
from app.importing.rows import endpoint_from_settings
from app.models import ConnectJob, ConnectJobRow, JobStatus, RowState
from app.probe.model import AccountProbe, Endpoint, ErrorCode, ProtocolResult

log = logging.getLogger(__name__)

rows = ConnectJobRow.__table__
jobs = ConnectJob.__table__


class AccountProber(Protocol):
    def probe_sync(self, smtp: Endpoint | None, imap: Endpoint | None) -> AccountProbe: ...


@dataclass(frozen=True)
class ClaimedRow:
    row_id: int
    job_id: str
    team_id: int
    attempt: int
    settings: dict[str, Any]
    credentials: str


@dataclass(frozen=True)
class RowOutcome:
    recorded: bool
    job_id: str | None = None
    job_finished: bool = False


def start_job(db: Database, clock: Clock, job_id: str) -> list[int]:
    """Mark a queued job running and return its pending rows; [] if it was already started."""
    now = clock.now()
    with db.transaction() as session:
        started = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now, last_progress_at=now)
        ).rowcount
        if not started:
            return []
        return list(session.scalars(
            select(rows.c.id)
            .where(rows.c.job_id == job_id, rows.c.state == RowState.PENDING)
            .order_by(rows.c.row_no)
        ))


def claim_row(db: Database, clock: Clock, lease_seconds: int, row_id: int) -> ClaimedRow | None:
    now = clock.now()
    with db.transaction() as session:
        claimed = session.execute(
            update(rows)
            .where(
                rows.c.id == row_id,
                or_(
                    rows.c.state == RowState.PENDING,
                    and_(rows.c.state == RowState.TESTING, rows.c.lease_expires_at < now),
                ),
            )
            .values(state=RowState.TESTING, attempts=rows.c.attempts + 1,
                    lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
            .returning(rows.c.job_id, rows.c.attempts, rows.c.settings, rows.c.credentials)
        ).one_or_none()
        if claimed is None:
            return None
        team_id = session.scalar(select(jobs.c.team_id).where(jobs.c.id == claimed.job_id))
    return ClaimedRow(row_id, claimed.job_id, team_id, claimed.attempts, claimed.settings,
                      claimed.credentials)


def probe_claimed(claim: ClaimedRow, cipher: CredentialCipher, prober: AccountProber
                  ) -> AccountProbe:
    """Test the row's mailbox. Never raises: a failure to test is a result."""
    try:
        secrets = cipher.decrypt(claim.credentials)
    except CredentialError as exc:
        failure = ProtocolResult("failed", ErrorCode.INTERNAL_ERROR, str(exc))
        return AccountProbe(smtp=failure, imap=failure, duration_ms=0)
    settings = claim.settings
    smtp = endpoint_from_settings(settings["smtp"], secrets["smtp"])
    imap = endpoint_from_settings(settings["imap"], secrets["imap"]) if settings.get("imap") \
        else None
    return prober.probe_sync(smtp, imap)


class _LeaseLost(Exception):
    pass


def record_result(db: Database, clock: Clock, claim: ClaimedRow, probe: AccountProbe
                  ) -> RowOutcome:
    """Save the account, the row's result and the job's counters in one transaction."""
    now = clock.now()
    verified = probe.verified
    try:
        with db.transaction() as session:
            account_id = upsert_tested_account(session, claim.team_id, claim.settings,
                                               claim.credentials, probe, now)
            mine = session.execute(
                update(rows)
                .where(rows.c.id == claim.row_id, rows.c.state == RowState.TESTING,
                       rows.c.attempts == claim.attempt)
                .values(
                    state=RowState.DONE, finished_at=now, lease_expires_at=None,
                    credentials=None, account_id=account_id, account_status=int(verified),
                    smtp_result=probe.smtp.outcome, smtp_error_code=probe.smtp.error_code,
                    smtp_error=probe.smtp.error, imap_result=probe.imap.outcome,
                    imap_error_code=probe.imap.error_code, imap_error=probe.imap.error,
                    duration_ms=probe.duration_ms,
                )
            ).rowcount
            if not mine:
                raise _LeaseLost
            counters = session.execute(
                update(jobs)
                .where(jobs.c.id == claim.job_id)
                .values(processed=jobs.c.processed + 1,
                        succeeded=jobs.c.succeeded + int(verified),
                        failed=jobs.c.failed + int(not verified),
                        last_progress_at=now)
                .returning(jobs.c.processed, jobs.c.total)
            ).one()
    except _LeaseLost:
        log.info("row %s was taken over by another worker; its result is theirs", claim.row_id)
        return RowOutcome(recorded=False, job_id=claim.job_id)
    return RowOutcome(recorded=True, job_id=claim.job_id,
                      job_finished=counters.processed >= counters.total)


def process_row(db: Database, clock: Clock, cipher: CredentialCipher, prober: AccountProber,
                lease_seconds: int, row_id: int) -> RowOutcome:
    claim = claim_row(db, clock, lease_seconds, row_id)
    if claim is None:
        return RowOutcome(recorded=False)
    # No database connection is held while the mailbox is tested.
    probe = probe_claimed(claim, cipher, prober)
    return record_result(db, clock, claim, probe)
