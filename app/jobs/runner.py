"""Running a job's rows: start, claim with a lease, probe, record the result with counters.

A row moves pending -> testing -> done. The claim is a conditional update that also bumps
`attempts`; the result is written only if the row is still ours (same attempt), so a worker
that lost its lease to the sweeper cannot double-count.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update

from app.accounts.saving import upsert_tested_account
from app.clock import Clock
from app.credentials import CredentialCipher, CredentialError
from app.db import Database
from app.importing.rows import endpoint_from_settings
from app.jobs.hostgate import HostGate
from app.models import ConnectJob, ConnectJobRow, JobStatus, RowState
from app.probe import TRANSIENT_CODES
from app.probe.model import AccountProbe, AccountProber, ErrorCode, ProtocolResult

log = logging.getLogger(__name__)

rows = ConnectJobRow.__table__
jobs = ConnectJob.__table__


@dataclass(frozen=True)
class ClaimedRow:
    row_id: int
    job_id: str
    team_id: int
    attempt: int
    settings: dict[str, Any]
    credentials: str
    verified: frozenset[str] = frozenset()  # protocols an earlier attempt already passed

    @property
    def hosts(self) -> list[str]:
        """The servers this attempt will contact."""
        return [self.settings[p]["host"] for p in ("smtp", "imap")
                if self.settings.get(p) and p not in self.verified]


@dataclass(frozen=True)
class RowOutcome:
    recorded: bool
    job_id: str | None = None
    row_id: int | None = None
    job_finished: bool = False
    # Publish the row again after this many seconds: for its retry, or because its hosts were
    # busy (then the attempt did not count).
    retry_in: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures are retried with exponential backoff and jitter; nothing else is.

    A wrong password retried is how accounts get locked, so authentication and TLS verdicts
    are final on the first attempt.
    """

    attempts: int = 3
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 120.0

    def limit(self, code: ErrorCode | None) -> int:
        if code not in TRANSIENT_CODES:
            return 1
        # Resolvers fail transiently, but a name that is gone stays gone: one more try.
        return min(self.attempts, 2) if code == ErrorCode.DNS_NOT_FOUND else self.attempts

    def retry_delay(self, probe: AccountProbe, attempt: int) -> float | None:
        """Seconds until the next attempt, or None when the verdict is final."""
        failures = [r for r in (probe.smtp, probe.imap) if r.outcome == "failed"]
        if not failures or any(attempt >= self.limit(r.error_code) for r in failures):
            return None
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def runners_for(pending: int, concurrency: int, rows_per_runner: int) -> int:
    """How many runners to announce for a job's pending rows.

    A runner tests up to rows_per_runner rows one after another, so a big job needs that many
    times fewer messages; a small one still gets a runner per worker thread.
    """
    return min(pending, max(concurrency, -(-pending // rows_per_runner)))


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


# The per-row statements are built once with bind parameters: building and cache-keying a
# statement on every call costs more CPU than running it.
_TAKE = dict(state=RowState.TESTING, attempts=rows.c.attempts + 1,
             lease_expires_at=bindparam("lease_until"))
_TAKEN = (rows.c.id, rows.c.job_id, rows.c.attempts, rows.c.settings, rows.c.credentials,
          rows.c.smtp_result, rows.c.imap_result,
          select(jobs.c.team_id).where(jobs.c.id == rows.c.job_id).scalar_subquery())
_CLAIM = (
    update(rows)
    .where(
        rows.c.id == bindparam("row_id"),
        or_(
            rows.c.state == RowState.PENDING,
            and_(rows.c.state == RowState.TESTING, rows.c.lease_expires_at < bindparam("now")),
        ),
    )
    .values(**_TAKE)
    .returning(*_TAKEN)
)
# SKIP LOCKED lets concurrent runners on PostgreSQL take different rows instead of queueing
# on one; SQLite has a single writer and ignores it.
_NEXT_PENDING = (
    select(rows.c.id)
    .where(rows.c.job_id == bindparam("of_job"), rows.c.state == RowState.PENDING)
    .order_by(rows.c.row_no)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_CLAIM_NEXT = (
    update(rows)
    .where(rows.c.id == _NEXT_PENDING, rows.c.state == RowState.PENDING)
    .values(**_TAKE)
    .returning(*_TAKEN)
)
_MINE = and_(rows.c.id == bindparam("row_id"), rows.c.state == RowState.TESTING,
             rows.c.attempts == bindparam("attempt"))
_RESULT_COLUMNS = ("smtp_result", "smtp_error_code", "smtp_error",
                   "imap_result", "imap_error_code", "imap_error")
_FINISH_ROW = update(rows).where(_MINE).values(
    state=RowState.DONE, lease_expires_at=None, credentials=None,
    **{name: bindparam(name) for name in
       ("finished_at", "account_id", "account_status", "duration_ms", *_RESULT_COLUMNS)},
)
_COUNT_ROW = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(processed=jobs.c.processed + 1,
            succeeded=jobs.c.succeeded + bindparam("verified"),
            failed=jobs.c.failed + bindparam("unverified"),
            last_progress_at=bindparam("now"))
    .returning(jobs.c.processed, jobs.c.total)
)
_PARK = update(rows).where(_MINE).values(
    lease_expires_at=bindparam("until"), attempts=rows.c.attempts - 1,
)
# A row waiting for its retry stays leased until the retry is due, so no runner takes it early;
# if the retry's message is lost, the sweeper finds the expired lease.
_DEFER_ROW = update(rows).where(_MINE).values(
    lease_expires_at=bindparam("retry_at"),
    **{name: bindparam(name) for name in _RESULT_COLUMNS},
)


def claim_row(db: Database, clock: Clock, lease_seconds: int, row_id: int) -> ClaimedRow | None:
    """Take this row if it is pending, or if its last holder's lease ran out."""
    now = clock.now()
    return _claim(db, _CLAIM, {"row_id": row_id, "now": now,
                               "lease_until": now + dt.timedelta(seconds=lease_seconds)})


def claim_next_row(db: Database, clock: Clock, lease_seconds: int, job_id: str
                   ) -> ClaimedRow | None:
    """Take the job's first pending row; None when it has none left."""
    lease_until = clock.now() + dt.timedelta(seconds=lease_seconds)
    return _claim(db, _CLAIM_NEXT, {"of_job": job_id, "lease_until": lease_until})


def _claim(db: Database, statement: Any, params: dict[str, Any]) -> ClaimedRow | None:
    with db.core_transaction() as connection:
        claimed = connection.execute(statement, params).one_or_none()
    if claimed is None:
        return None
    row_id, job_id, attempt, settings, credentials, smtp_result, imap_result, team_id = claimed
    verified = frozenset(p for p, result in (("smtp", smtp_result), ("imap", imap_result))
                         if result == "ok")
    return ClaimedRow(row_id, job_id, team_id, attempt, settings, credentials, verified)


def park_row(db: Database, clock: Clock, claim: ClaimedRow, seconds: float) -> None:
    """Set a row aside while its hosts are busy: not taken by a runner for `seconds`, and the
    attempt it never made does not count."""
    until = clock.now() + dt.timedelta(seconds=seconds)
    with db.core_transaction() as connection:
        connection.execute(_PARK, {"row_id": claim.row_id, "attempt": claim.attempt,
                                   "until": until})


def probe_claimed(claim: ClaimedRow, cipher: CredentialCipher, prober: AccountProber
                  ) -> AccountProbe:
    """Test the row's mailbox. Never raises: a failure to test is a result."""
    try:
        secrets = cipher.decrypt(claim.credentials)
    except CredentialError as exc:
        failure = ProtocolResult("failed", ErrorCode.INTERNAL_ERROR, str(exc))
        return AccountProbe(smtp=failure, imap=failure, duration_ms=0)
    settings = claim.settings
    endpoints = {
        protocol: endpoint_from_settings(settings[protocol], secrets[protocol])
        for protocol in ("smtp", "imap")
        if settings.get(protocol) and protocol not in claim.verified
    }
    probe = prober.probe_sync(endpoints.get("smtp"), endpoints.get("imap"))
    carried = ProtocolResult("ok", attempts=0)
    return replace(
        probe,
        smtp=carried if "smtp" in claim.verified else probe.smtp,
        imap=carried if "imap" in claim.verified else probe.imap,
    )


class _LeaseLost(Exception):
    pass


def _results(probe: AccountProbe) -> dict[str, Any]:
    return {"smtp_result": probe.smtp.outcome, "smtp_error_code": probe.smtp.error_code,
            "smtp_error": probe.smtp.error, "imap_result": probe.imap.outcome,
            "imap_error_code": probe.imap.error_code, "imap_error": probe.imap.error}


def record_result(db: Database, clock: Clock, claim: ClaimedRow, probe: AccountProbe
                  ) -> RowOutcome:
    """Save the account, the row's result and the job's counters in one transaction."""
    now = clock.now()
    verified = int(probe.verified)
    try:
        with db.core_transaction() as connection:
            account_id = upsert_tested_account(connection, claim.team_id, claim.settings,
                                               claim.credentials, probe, now)
            mine = connection.execute(_FINISH_ROW, {
                "row_id": claim.row_id, "attempt": claim.attempt, "finished_at": now,
                "account_id": account_id, "account_status": verified,
                "duration_ms": probe.duration_ms, **_results(probe),
            }).rowcount
            if not mine:
                raise _LeaseLost
            processed, total = connection.execute(_COUNT_ROW, {
                "job_id": claim.job_id, "verified": verified, "unverified": 1 - verified,
                "now": now,
            }).one()
    except _LeaseLost:
        log.info("row %s was taken over by another worker; its result is theirs", claim.row_id)
        return RowOutcome(recorded=False, job_id=claim.job_id)
    return RowOutcome(recorded=True, job_id=claim.job_id, job_finished=processed >= total)


def defer_row(db: Database, clock: Clock, claim: ClaimedRow, probe: AccountProbe,
              delay_seconds: float) -> bool:
    """Keep the row for another attempt in delay_seconds, and what this one learnt."""
    retry_at = clock.now() + dt.timedelta(seconds=delay_seconds)
    with db.core_transaction() as connection:
        return bool(connection.execute(_DEFER_ROW, {
            "row_id": claim.row_id, "attempt": claim.attempt, "retry_at": retry_at,
            **_results(probe),
        }).rowcount)


@dataclass(frozen=True)
class RowProcessor:
    """Everything one row's test needs; one per worker process, shared by its threads."""

    db: Database
    clock: Clock
    cipher: CredentialCipher
    prober: AccountProber
    gate: HostGate
    policy: RetryPolicy
    lease_seconds: int

    def process(self, row_id: int) -> RowOutcome:
        """Test this row, if it still needs it."""
        claim = claim_row(self.db, self.clock, self.lease_seconds, row_id)
        return RowOutcome(recorded=False) if claim is None else self._test(claim)

    def process_next(self, job_id: str) -> RowOutcome | None:
        """Test the job's next pending row; None when there is none."""
        claim = claim_next_row(self.db, self.clock, self.lease_seconds, job_id)
        return None if claim is None else self._test(claim)

    def _test(self, claim: ClaimedRow) -> RowOutcome:
        # A host at its cap sets the row aside instead of parking this thread, so rows for
        # other hosts keep flowing.
        decision = self.gate.acquire(claim.hosts)
        if decision.lease is None:
            park_row(self.db, self.clock, claim, decision.wait_seconds)
            return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id,
                              retry_in=decision.wait_seconds)
        try:
            # No database connection is held while the mailbox is tested.
            probe = probe_claimed(claim, self.cipher, self.prober)
        finally:
            self.gate.release(decision.lease)
        delay = self.policy.retry_delay(probe, claim.attempt)
        if delay is not None and defer_row(self.db, self.clock, claim, probe, delay):
            return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id,
                              retry_in=delay)
        return record_result(self.db, self.clock, claim, probe)
