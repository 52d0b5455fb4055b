"""Running a job's rows: start, claim with a lease, probe, record the result with counters.

A row's states say what they mean:
- pending: ready for any runner;
- testing: claimed; `lease_expires_at` says until when it belongs to its worker;
- waiting: set aside until `wait_until`: its host is at its cap (the row is on the host's
  waiting list and the release of a slot wakes it), the connect spacing, the retry of a
  transient failure, or its team's login quota (a delayed message wakes it); `wait_until` is
  also the sweeper's safety net;
- done, invalid, cancelled: final.

Every claim (pending or waiting -> testing) bumps `claims`, the fence: a result is written only
while the row is still testing under the same claim, so a worker whose lease was taken over
cannot write. `attempts` counts tests tried: a row set aside before its test gives its attempt
back. Claims only move pending and waiting rows, so a cancelled row is never taken.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Insert,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from app import logs, metrics
from app.accounts.autoconfig import Discoverer
from app.accounts.detect import JobMxCache, MxResolver
from app.accounts.retest import (
    RetestTarget,
    load_retest_target,
    store_refreshed_tokens,
    write_retest_result,
)
from app.accounts.saving import upsert_tested_account
from app.clock import Clock
from app.credentials import CredentialCipher, CredentialError
from app.db import Database
from app.importing.rows import (
    DETECT,
    OAUTH2_PROVIDER,
    PROXY,
    FieldError,
    complete_detected,
    endpoint_from_settings,
    is_oauth2,
    login_secret,
    record_detected,
)
from app.jobs.hostgate import HostGate, HostLease
from app.jobs.intake import INVALID_FIELDS
from app.jobs.loginquota import LoginQuota, OpenQuota
from app.jobs.publisher import JobPublisher
from app.models import (
    ConnectJob,
    ConnectJobRow,
    EmailAccount,
    JobErrorCount,
    JobStatus,
    RowState,
)
from app.oauth.tokens import RefreshFailed, TokenRefresher, refresh_failure
from app.probe import TRANSIENT_CODES
from app.probe.model import AccountProbe, AccountProber, ErrorCode, ProtocolResult

log = logging.getLogger(__name__)

rows = ConnectJobRow.__table__
jobs = ConnectJob.__table__
accounts = EmailAccount.__table__
error_counts = JobErrorCount.__table__

# One runner tests up to this many of its job's rows, one after another: a tenth of the
# per-message broker work, while a slow row holds up at most nine others of its runner.
ROWS_PER_RUNNER = 10
# A row whose account was deleted after its job was submitted (or, a re-test row, whose
# account no longer exists): reported failed with this code, and never tested if it was gone
# by the row's claim.
ACCOUNT_DELETED = "account_deleted"


@dataclass(frozen=True)
class ClaimedRow:
    row_id: int
    job_id: str
    team_id: int
    attempt: int
    # None: the row's account is gone (deleted since its job was submitted, or a re-test
    # row's account): it is reported, never tested.
    settings: dict[str, Any] | None
    credentials: str | None
    verified: frozenset[str] = frozenset()  # protocols an earlier attempt already passed
    claims: int = 0  # the fence: this claim's number
    # A re-test row: the account as it was when claimed, whose result columns it writes.
    target: RetestTarget | None = None
    # Its job's quota_wait_until when claimed: a row the quota lets through resumes the job.
    quota_mark: dt.datetime | None = None
    # When its job was submitted: its account is saved only over older settings.
    submitted_at: dt.datetime | None = None

    @property
    def hosts(self) -> list[str]:
        """The servers this attempt will contact."""
        settings = self.settings or {}
        return [settings[p]["host"] for p in ("smtp", "imap")
                if settings.get(p) and p not in self.verified]


@dataclass(frozen=True)
class RowOutcome:
    recorded: bool  # the row is final, with its counters
    job_id: str | None = None
    row_id: int | None = None
    job_finished: bool = False
    # Wake the row with a message after this many seconds: its retry, or the connect spacing.
    retry_in: float | None = None
    # The row was set aside without being tested (its host was busy, or spacing).
    set_aside: bool = False
    # Waiting rows this step's release of host slots woke, and those hosts: the runner must
    # start them.
    woken: tuple[int, ...] = ()
    freed: tuple[str, ...] = ()
    # The hosts that made the row wait (at their cap, or spacing).
    busy: tuple[str, ...] = ()
    # The team's login quota made the row (and the job's pending rows) wait: its runner stops
    # taking the job's rows.
    quota_blocked: bool = False
    # The quota let the job through again: announce this many runners for its revived rows.
    runners: int = 0
    # The job's next row, claimed in the transaction of this row's result (see ClaimAhead).
    next_claim: ClaimedRow | None = None


@dataclass(frozen=True)
class ClaimAhead:
    """Claim the job's next pending row (on none of the `avoid` hosts) in the transaction
    that records this row's result: a runner going on with its job saves a transaction per
    row."""

    lease_seconds: int
    avoid: frozenset[str] = frozenset()


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

    def retry_delay(self, probe: AccountProbe, attempt: int, transient: bool = False
                    ) -> float | None:
        """Seconds until the next attempt, or None when the verdict is final. `transient`:
        the failure is one to retry whatever its code (an unreachable OAuth token endpoint)."""
        failures = [r for r in (probe.smtp, probe.imap) if r.outcome == "failed"]
        if not failures or any(
                attempt >= (self.attempts if transient else self.limit(r.error_code))
                for r in failures):
            return None
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def runners_for(pending: int, concurrency: int, rows_per_runner: int = ROWS_PER_RUNNER) -> int:
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
_TAKE = dict(state=RowState.TESTING, attempts=rows.c.attempts + 1, claims=rows.c.claims + 1,
             lease_expires_at=bindparam("lease_until"), wait_until=None)
# The row's account was deleted after its job was submitted: the DELETE is the user's latest
# word, so the mailbox is not logged into (nor the team's login quota spent) for an account
# the row could not bring back. Written out because SQLAlchemy leaves columns unqualified in
# SQLite's RETURNING, where `email = email` would compare a column with itself.
_DELETED_SINCE_SUBMITTED = literal_column(
    "EXISTS (SELECT 1 FROM connect_jobs JOIN account_deletions"
    " ON account_deletions.team_id = connect_jobs.team_id"
    " WHERE connect_jobs.id = connect_job_rows.job_id"
    " AND account_deletions.email = connect_job_rows.email"
    " AND account_deletions.deleted_at > connect_jobs.created_at)", Boolean)
_TAKEN = (rows.c.id, rows.c.job_id, rows.c.attempts, rows.c.claims, rows.c.settings,
          rows.c.credentials, rows.c.smtp_result, rows.c.imap_result, rows.c.account_id,
          select(jobs.c.team_id).where(jobs.c.id == rows.c.job_id).scalar_subquery(),
          select(jobs.c.quota_wait_until).where(jobs.c.id == rows.c.job_id).scalar_subquery(),
          select(jobs.c.created_at).where(jobs.c.id == rows.c.job_id).scalar_subquery(),
          _DELETED_SINCE_SUBMITTED)
# By id: a row woken from a host's waiting list, or by its timed message, or handed on.
_CLAIM = (
    update(rows)
    .where(rows.c.id == bindparam("row_id"),
           rows.c.state.in_((RowState.PENDING, RowState.WAITING)))
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
# After a host turned out busy, a runner looks for the job's next row on other hosts, among
# the next few pending ones: so a job whose rows all wait on one host is not claimed and
# parked row by row, while rows for free hosts further on still get tested. Rare (only after
# a set-aside), so the JSON lookups stay off the per-row path.
ELSEWHERE_WINDOW = 50
_WINDOW = (
    select(rows.c.id, rows.c.row_no,
           func.coalesce(rows.c.settings[("smtp", "host")].as_string(), "").label("smtp"),
           func.coalesce(rows.c.settings[("imap", "host")].as_string(), "").label("imap"))
    .where(rows.c.job_id == bindparam("of_job"), rows.c.state == RowState.PENDING)
    .order_by(rows.c.row_no)
    .limit(ELSEWHERE_WINDOW)
    .subquery()
)
_NEXT_ELSEWHERE = (
    select(_WINDOW.c.id)
    .where(_WINDOW.c.smtp.not_in(bindparam("busy", expanding=True)),
           _WINDOW.c.imap.not_in(bindparam("busy", expanding=True)))
    .order_by(_WINDOW.c.row_no)
    .limit(1)
    .scalar_subquery()
)
_CLAIM_ELSEWHERE = (
    update(rows)
    .where(rows.c.id == _NEXT_ELSEWHERE, rows.c.state == RowState.PENDING)
    .values(**_TAKE)
    .returning(*_TAKEN)
)
_MINE = (rows.c.id == bindparam("row_id"), rows.c.state == RowState.TESTING,
         rows.c.claims == bindparam("claim"))
_RESULT_COLUMNS = ("smtp_result", "smtp_error_code", "smtp_error",
                   "imap_result", "imap_error_code", "imap_error")
_FINISH_ROW = update(rows).where(*_MINE).values(
    state=RowState.DONE, lease_expires_at=None, credentials=None,
    **{name: bindparam(name) for name in
       ("finished_at", "account_id", "account_status", "duration_ms", "error_code",
        *_RESULT_COLUMNS)},
)
_INVALID_ROW = update(rows).where(*_MINE).values(
    state=RowState.INVALID, lease_expires_at=None, credentials=None,
    error_code=bindparam("error_code"), field_errors=bindparam("field_errors"),
    finished_at=bindparam("finished_at"),
)
_COUNT_ROW = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(processed=jobs.c.processed + 1,
            succeeded=jobs.c.succeeded + bindparam("verified"),
            failed=jobs.c.failed + bindparam("unverified"),
            invalid=jobs.c.invalid + bindparam("invalid"),
            last_progress_at=bindparam("now"))
    .returning(jobs.c.processed, jobs.c.total)
)
# Set aside before testing: the attempt it never made does not count.
_SET_ASIDE = update(rows).where(*_MINE).values(
    state=RowState.WAITING, wait_until=bindparam("until"), lease_expires_at=None,
    attempts=rows.c.attempts - 1,
)
# Claimed ahead but never tested: the attempt it never made does not count.
_GIVE_BACK = update(rows).where(*_MINE).values(
    state=RowState.PENDING, lease_expires_at=None, attempts=rows.c.attempts - 1,
)
# Register-then-recheck found a free slot after all: the row comes back to the runner that
# set it aside, under the same claim, unless someone else moved it meanwhile (a cancel).
_TAKE_BACK = (
    update(rows)
    .where(rows.c.id == bindparam("row_id"), rows.c.state == RowState.WAITING,
           rows.c.claims == bindparam("claim"))
    .values(state=RowState.TESTING, attempts=rows.c.attempts + 1, wait_until=None,
            lease_expires_at=bindparam("lease_until"))
)
# A row waiting for its retry keeps what this attempt learnt; a delayed message wakes it,
# and the sweeper if that message is lost.
_DEFER_ROW = update(rows).where(*_MINE).values(
    state=RowState.WAITING, wait_until=bindparam("retry_at"), lease_expires_at=None,
    **{name: bindparam(name) for name in _RESULT_COLUMNS},
)
# Out of login quota: the job's pending rows wait with the claimed one, so its runners find
# nothing to take, and the job shows until when.
_PARK_PENDING = (update(rows)
                 .where(rows.c.job_id == bindparam("of_job"), rows.c.state == RowState.PENDING)
                 .values(state=RowState.WAITING, wait_until=bindparam("until")))
_MARK_QUOTA_WAIT = (update(jobs).where(jobs.c.id == bindparam("of_job"))
                    .values(quota_wait_until=bindparam("until")))
# Let through again: only the runner that clears the mark it saw resumes the job (a newer
# block's mark stays), and it brings back the rows whose wait ends by then, as the sweeper
# would once their wait_until passes.
_CLEAR_QUOTA_WAIT = (update(jobs)
                     .where(jobs.c.id == bindparam("of_job"),
                            jobs.c.quota_wait_until == bindparam("seen"))
                     .values(quota_wait_until=None))
_REVIVE_PARKED = (update(rows)
                  .where(rows.c.job_id == bindparam("of_job"), rows.c.state == RowState.WAITING,
                         rows.c.wait_until <= bindparam("upto"))
                  .values(state=RowState.PENDING, wait_until=None))
_STORE_SETTINGS = update(rows).where(*_MINE).values(settings=bindparam("settings"))
_STORE_CREDENTIALS = update(rows).where(*_MINE).values(credentials=bindparam("credentials"))

_ACCOUNT_EXISTS = select(accounts.c.id).where(accounts.c.id == bindparam("account_id"),
                                              accounts.c.team_id == bindparam("team_id"))
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@functools.cache
def _count_error(dialect: str) -> Insert:
    # Built once per dialect: it runs in the transaction of every failed row's result.
    insert = _INSERTS[dialect](error_counts).values(
        job_id=bindparam("job_id"), code=bindparam("code"), count=1)
    return insert.on_conflict_do_update(
        index_elements=["job_id", "code"], set_={"count": error_counts.c.count + 1})


def claim_row(db: Database, clock: Clock, lease_seconds: int, row_id: int) -> ClaimedRow | None:
    """Take this row if it is pending or waiting (woken, or its wait is over)."""
    lease_until = clock.now() + dt.timedelta(seconds=lease_seconds)
    return _claim(db, _CLAIM, {"row_id": row_id, "lease_until": lease_until})


def claim_next_row(db: Database, clock: Clock, lease_seconds: int, job_id: str,
                   avoid: frozenset[str] = frozenset()) -> ClaimedRow | None:
    """Take the job's first pending row; None when it has none left. With `avoid`, the first
    of its next few pending rows that contacts none of those hosts."""
    with db.core_transaction() as connection:
        return _claim_next(connection, clock, lease_seconds, job_id, avoid)


def _claim_next(connection: Connection, clock: Clock, lease_seconds: int, job_id: str,
                avoid: frozenset[str]) -> ClaimedRow | None:
    params = {"of_job": job_id, "lease_until": clock.now() + dt.timedelta(seconds=lease_seconds)}
    if avoid:
        return _claimed(connection, _CLAIM_ELSEWHERE, {**params, "busy": sorted(avoid)})
    return _claimed(connection, _CLAIM_NEXT, params)


def _claim(db: Database, statement: Any, params: dict[str, Any]) -> ClaimedRow | None:
    with db.core_transaction() as connection:
        return _claimed(connection, statement, params)


def _claimed(connection: Connection, statement: Any, params: dict[str, Any]
             ) -> ClaimedRow | None:
    claimed = connection.execute(statement, params).one_or_none()
    if claimed is None:
        return None
    (row_id, job_id, attempt, claims, settings, credentials, smtp_result, imap_result,
     account_id, team_id, quota_mark, submitted_at, deleted) = claimed
    target = None
    if deleted:
        settings = credentials = None
    elif settings is None and account_id is not None:
        # A re-test tests the account as it is now, in the claim's own transaction.
        target = load_retest_target(connection, team_id, account_id)
        if target is not None:
            settings, credentials = target.settings, target.credentials
    verified = frozenset(p for p, result in (("smtp", smtp_result), ("imap", imap_result))
                         if result == "ok")
    return ClaimedRow(row_id, job_id, team_id, attempt, settings, credentials, verified,
                      claims, target, quota_mark, submitted_at)


def _mine(claim: ClaimedRow) -> dict[str, Any]:
    return {"row_id": claim.row_id, "claim": claim.claims}


def set_aside(db: Database, clock: Clock, claim: ClaimedRow, seconds: float) -> bool:
    """Make the row wait for `seconds` without counting an attempt; False if it is not ours."""
    until = clock.now() + dt.timedelta(seconds=seconds)
    with db.core_transaction() as connection:
        return bool(connection.execute(_SET_ASIDE, {**_mine(claim), "until": until}).rowcount)


def give_back(db: Database, claim: ClaimedRow) -> bool:
    """Return a claimed, untested row to pending (its worker is stopping)."""
    with db.core_transaction() as connection:
        return bool(connection.execute(_GIVE_BACK, _mine(claim)).rowcount)


def take_back(db: Database, clock: Clock, lease_seconds: int, claim: ClaimedRow) -> bool:
    lease_until = clock.now() + dt.timedelta(seconds=lease_seconds)
    with db.core_transaction() as connection:
        return bool(connection.execute(
            _TAKE_BACK, {**_mine(claim), "lease_until": lease_until}).rowcount)


def probe_claimed(claim: ClaimedRow, cipher: CredentialCipher, prober: AccountProber
                  ) -> AccountProbe:
    """Test the row's mailbox. Never raises: a failure to test is a result."""
    try:
        secrets = cipher.decrypt(claim.credentials or "")
    except CredentialError as exc:
        failure = ProtocolResult("failed", ErrorCode.INTERNAL_ERROR, str(exc))
        return AccountProbe(smtp=failure, imap=failure, duration_ms=0)
    settings = claim.settings or {}
    endpoints = {
        protocol: endpoint_from_settings(settings[protocol],
                                         *login_secret(settings, secrets, protocol),
                                         proxy=secrets.get(PROXY))
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


_NO_RESULTS = dict.fromkeys(_RESULT_COLUMNS)


def _results(probe: AccountProbe) -> dict[str, Any]:
    return {"smtp_result": probe.smtp.outcome, "smtp_error_code": probe.smtp.error_code,
            "smtp_error": probe.smtp.error, "imap_result": probe.imap.outcome,
            "imap_error_code": probe.imap.error_code, "imap_error": probe.imap.error}


def record_result(db: Database, clock: Clock, claim: ClaimedRow, probe: AccountProbe | None,
                  ahead: ClaimAhead | None = None) -> RowOutcome:
    """Save the account, the row's result, the job's counters and its error counts in one
    transaction, and with `ahead` claim the job's next row in it too. `probe` None: a re-test
    whose account was deleted before it was tested.

    A connect row upserts its account. A re-test row writes only the account's result
    columns, fenced by the settings version it tested: an account deleted meanwhile stays
    deleted (the row reports account_deleted), and one whose settings changed meanwhile is
    not touched (the row keeps its own result). Likewise a connect row neither brings back an
    account deleted after its job was submitted nor overwrites newer settings.
    """
    now = clock.now()
    try:
        with db.core_transaction() as connection:
            values = _row_result(connection, claim, probe, now)
            if not connection.execute(_FINISH_ROW, {**_mine(claim), **values}).rowcount:
                raise _LeaseLost
            # Before the job's counters: on PostgreSQL the job's row stays locked from its
            # update to the commit, and every runner of the job waits for that lock.
            following = None if ahead is None else _claim_next(
                connection, clock, ahead.lease_seconds, claim.job_id, ahead.avoid)
            code = values["error_code"] or values["smtp_error_code"] or values["imap_error_code"]
            verified = values["account_status"]
            finished = _count(connection, claim.job_id, now, verified=verified,
                              unverified=1 - verified, code=None if verified else code)
    except _LeaseLost:
        log.info("row %s was taken over by another worker; its result is theirs", claim.row_id)
        return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id)
    logs.bind(account_id=values["account_id"])
    metrics.rows_finished("connected" if verified else "failed")
    # The line's context names the row, its job and its account; the code says why.
    log.debug("row recorded: %s%s", "connected" if verified else "failed",
              "" if verified else f" ({code})")
    return RowOutcome(recorded=True, job_id=claim.job_id, row_id=claim.row_id,
                      job_finished=finished, next_claim=following)


def _row_result(connection: Connection, claim: ClaimedRow, probe: AccountProbe | None,
                now: dt.datetime) -> dict[str, Any]:
    deleted = {"finished_at": now, "account_status": 0, "duration_ms": None,
               "error_code": ACCOUNT_DELETED, "account_id": None, **_NO_RESULTS}
    if probe is None:
        return deleted
    if claim.target is None:
        # Over settings submitted after the job's (a PATCH meanwhile), the row keeps its own
        # result and names the account, which stays as it is.
        account_id = upsert_tested_account(connection, claim.team_id, claim.settings or {},
                                           claim.credentials or "", probe, now,
                                           claim.submitted_at or now).account_id
        if account_id is None:
            # Deleted after the job's POST: it stays deleted, and the row keeps what its test
            # found.
            return {**deleted, "duration_ms": probe.duration_ms, **_results(probe)}
    else:
        account_id = claim.target.account_id
        if not write_retest_result(connection, claim.target, probe, now) and \
                connection.execute(_ACCOUNT_EXISTS, {"account_id": account_id,
                                                     "team_id": claim.team_id}).first() is None:
            return {**deleted, "duration_ms": probe.duration_ms}
    return {"finished_at": now, "account_id": account_id,
            "account_status": int(probe.verified), "duration_ms": probe.duration_ms,
            "error_code": None, **_results(probe)}


def _count(connection: Connection, job_id: str, now: dt.datetime, *, verified: int = 0,
           unverified: int = 0, invalid: int = 0, code: str | None = None) -> bool:
    """Count a final row on its job (and its error code); True when it was the job's last."""
    processed, total = connection.execute(_COUNT_ROW, {
        "job_id": job_id, "verified": verified, "unverified": unverified, "invalid": invalid,
        "now": now,
    }).one()
    if code is not None:
        connection.execute(_count_error(connection.dialect.name),
                           {"job_id": job_id, "code": code})
    return processed >= total


def finish_invalid(db: Database, clock: Clock, claim: ClaimedRow, errors: list[FieldError]
                   ) -> RowOutcome:
    """A row the worker found invalid (its provider could not be detected): final, counted
    as invalid, never tested."""
    now = clock.now()
    with db.core_transaction() as connection:
        mine = connection.execute(_INVALID_ROW, {
            **_mine(claim), "error_code": INVALID_FIELDS, "finished_at": now,
            "field_errors": [e.as_dict() for e in errors],
        }).rowcount
        finished = mine and _count(connection, claim.job_id, now, invalid=1,
                                   code=INVALID_FIELDS)
    if mine:
        metrics.rows_finished("invalid")
    return RowOutcome(recorded=bool(mine), job_id=claim.job_id, row_id=claim.row_id,
                      job_finished=bool(finished))


def wait_for_quota(db: Database, clock: Clock, claim: ClaimedRow, seconds: float) -> bool:
    """The team is out of login quota: the row (its attempt given back) and its job's pending
    rows wait `seconds`, and the job says so. False if the row is not ours any more."""
    until = clock.now() + dt.timedelta(seconds=seconds)
    with db.core_transaction() as connection:
        if not connection.execute(_SET_ASIDE, {**_mine(claim), "until": until}).rowcount:
            return False
        connection.execute(_PARK_PENDING, {"of_job": claim.job_id, "until": until})
        connection.execute(_MARK_QUOTA_WAIT, {"of_job": claim.job_id, "until": until})
    return True


def resume_after_quota(db: Database, clock: Clock, claim: ClaimedRow) -> int:
    """The quota let a row of a job it had blocked through: end the job's wait and bring its
    parked rows back to pending. Returns how many came back (0: someone else resumed it, or
    a newer block holds it)."""
    if claim.quota_mark is None:
        return 0
    with db.core_transaction() as connection:
        if not connection.execute(_CLEAR_QUOTA_WAIT, {"of_job": claim.job_id,
                                                      "seen": claim.quota_mark}).rowcount:
            return 0
        return connection.execute(_REVIVE_PARKED, {
            "of_job": claim.job_id, "upto": max(clock.now(), claim.quota_mark)}).rowcount


def store_settings(db: Database, claim: ClaimedRow, settings: dict[str, Any]) -> bool:
    """Keep a detected row's completed settings, so a retry does not detect again and the
    report shows what was filled in."""
    with db.core_transaction() as connection:
        return bool(connection.execute(
            _STORE_SETTINGS, {**_mine(claim), "settings": settings}).rowcount)


def keep_detected(db: Database, claim: ClaimedRow, probe: AccountProbe) -> ClaimedRow:
    """A connect row whose encryption the probe detected keeps it in its settings: the report's
    filledIn shows it, its account is saved with it, and a retry does not detect again. (A
    re-test row has no settings of its own: write_retest_result stores it on the account.)"""
    detected = None if claim.target is not None else record_detected(claim.settings or {}, probe)
    if detected is None or not store_settings(db, claim, detected):
        return claim
    return replace(claim, settings=detected)


def store_credentials(db: Database, claim: ClaimedRow, credentials: str) -> ClaimedRow | None:
    """Keep refreshed OAuth tokens: on the job row (a connect), or on the account, fenced by
    the settings version it read (a re-test). The claim carrying them, or None when the row is
    no longer ours. A re-test whose account changed meanwhile still tests with them; its result
    is fenced off the newer settings anyway."""
    if claim.target is not None:
        target = store_refreshed_tokens(db, claim.target, credentials)
        return replace(claim, credentials=credentials, target=target)
    with db.core_transaction() as connection:
        if not connection.execute(_STORE_CREDENTIALS,
                                  {**_mine(claim), "credentials": credentials}).rowcount:
            return None
    return replace(claim, credentials=credentials)


def defer_row(db: Database, clock: Clock, claim: ClaimedRow, probe: AccountProbe,
              delay_seconds: float) -> bool:
    """Make the row wait delay_seconds for another attempt, keeping what this one learnt."""
    retry_at = clock.now() + dt.timedelta(seconds=delay_seconds)
    with db.core_transaction() as connection:
        return bool(connection.execute(_DEFER_ROW, {
            **_mine(claim), "retry_at": retry_at, **_results(probe),
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
    # Each team's logins per rolling hour; and how many runners a job gets when the quota
    # lets it through again (as many as the sweeper gives a job whose rows came back).
    quota: LoginQuota = field(default_factory=OpenQuota)
    resume_runners: int = 1
    # The MX resolver of a job, for rows whose provider is detected here (one cache per job).
    mx_for_job: Callable[[str], MxResolver] = field(
        default_factory=lambda: JobMxCache().for_job)
    # SRV and autoconfig for domains MX does not recognise (one cache per job); None: no
    # autodiscovery, such rows are invalid.
    discoverer_for_job: Callable[[str], Discoverer] | None = None
    # Refreshes OAuth2 accounts' access tokens before their probe; None: tokens are used as
    # they are stored.
    tokens: TokenRefresher | None = None

    def process(self, row_id: int, ahead: ClaimAhead | None = None) -> RowOutcome | None:
        """Test this row, if it still needs it; None when it cannot be claimed. With `ahead`,
        the result's transaction also claims the job's next row (`RowOutcome.next_claim`)."""
        claim = claim_row(self.db, self.clock, self.lease_seconds, row_id)
        return None if claim is None else self._test(claim, ahead)

    def process_next(self, job_id: str, avoid: frozenset[str] = frozenset(),
                     ahead: ClaimAhead | None = None) -> RowOutcome | None:
        """Test the job's next pending row (on none of the `avoid` hosts); None when there
        is none. `ahead` as for process()."""
        claim = claim_next_row(self.db, self.clock, self.lease_seconds, job_id, avoid)
        return None if claim is None else self._test(claim, ahead)

    def run(self, queue: JobPublisher, job_id: str | None = None, row_id: int | None = None,
            budget: int = ROWS_PER_RUNNER, stopping: Callable[[], bool] = lambda: False
            ) -> None:
        """A runner: test up to `budget` rows of a job, publishing each row's follow-ups once
        its transaction has committed.

        It starts with `row_id` when given (a woken or timed row, which names the job), then
        each row a freed slot woke (going on as a runner of that row's job), then the job's
        next pending rows, each claimed in the transaction of the last one's result. Once a
        row had to wait for its host, the runner takes no more rows of that host (they would
        only wait too), only rows of other hosts among the job's next few; when there are
        none it stops. So idle runners never claim and park a whole
        job whose rows all wait on one host, while rows for free hosts keep flowing. Out of
        budget, it hands its woken row on, or else announces one successor. It does the same
        as soon as `stopping()` says its worker is shutting down, so that a deploy's grace
        period waits for one probe, not for a whole budget of them.
        """
        woken: deque[tuple[int, tuple[str, ...]]] = deque()
        if row_id is not None:
            woken.append((row_id, ()))
        busy: set[str] = set()
        # Jobs whose team ran out of login quota: their rows wait for a timed message.
        blocked: set[str] = set()
        # The row the last result's transaction claimed for this runner to test next.
        ahead: ClaimedRow | None = None
        for turn in range(budget):
            if stopping():
                if ahead is not None:
                    give_back(self.db, ahead)
                break
            # Not on the last turn: a row claimed then would have to be given back.
            claim_ahead = None if turn == budget - 1 else ClaimAhead(self.lease_seconds,
                                                                      frozenset(busy))
            outcome = (self._test(ahead, claim_ahead) if ahead is not None else
                       self._next(woken, None if job_id in blocked else job_id,
                                  frozenset(busy), claim_ahead))
            if outcome is None:
                return
            ahead = outcome.next_claim
            if job_id is not None and outcome.job_id != job_id and job_id not in blocked:
                # A woken row of another job: this runner goes on as that job's runner (its
                # own runners stopped when its rows had to wait), and its old job gets a
                # successor in its place.
                queue.run_rows(job_id, 1)
            job_id = outcome.job_id
            if outcome.quota_blocked and job_id is not None:
                blocked.add(job_id)
            self._follow_up(queue, outcome)
            if outcome.woken:
                # One woken row is started here, next; the rest at once on other threads, so
                # no freed slot stays idle while this runner tests.
                woken.append((outcome.woken[0], outcome.freed))
                queue.wake_rows(outcome.woken[1:])
            busy.update(outcome.busy)
        if woken:
            queue.wake_rows([row for row, _ in woken])
        elif job_id is not None and job_id not in blocked:
            queue.run_rows(job_id, 1)

    def _next(self, woken: deque[tuple[int, tuple[str, ...]]], job_id: str | None,
              busy: frozenset[str], ahead: ClaimAhead | None) -> RowOutcome | None:
        while woken:
            row_id, freed = woken.popleft()
            # Woken rows go first: claim ahead only when none is left.
            outcome = self.process(row_id, None if woken else ahead)
            if outcome is not None:
                return outcome
            # Woken but done, cancelled or taken meanwhile: pass the freed slot on, or the
            # rows still waiting for it would wait for the sweeper.
            woken.extend((row, freed) for row in self.gate.wake(freed))
        return None if job_id is None else self.process_next(job_id, busy, ahead)

    @staticmethod
    def _follow_up(queue: JobPublisher, outcome: RowOutcome) -> None:
        if outcome.retry_in is not None and outcome.row_id is not None:
            queue.probe_row_later(outcome.row_id, outcome.retry_in)
        if outcome.job_finished and outcome.job_id is not None:
            queue.finish_job(outcome.job_id)
        if outcome.runners and outcome.job_id is not None:
            queue.run_rows(outcome.job_id, outcome.runners)

    def _test(self, claim: ClaimedRow, ahead: ClaimAhead | None = None) -> RowOutcome:
        # Every line logged while this row is tested names it, its job and (a re-test) its
        # account; record_result adds the account a connect row saved.
        with logs.log_context(request_id=claim.job_id, row_id=claim.row_id,
                              account_id=claim.target.account_id if claim.target else None):
            return self._test_row(claim, ahead)

    def _test_row(self, claim: ClaimedRow, ahead: ClaimAhead | None) -> RowOutcome:
        if claim.settings is None:
            return record_result(self.db, self.clock, claim, None)
        if claim.settings.get(DETECT):
            # The MX lookup (and autodiscovery) happens here, not in the POST; no database
            # connection is held.
            completed = complete_detected(
                claim.settings, self.mx_for_job(claim.job_id),
                self.discoverer_for_job(claim.job_id) if self.discoverer_for_job else None)
            if isinstance(completed, list):
                return finish_invalid(self.db, self.clock, claim, completed)
            if not store_settings(self.db, claim, completed):
                return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id)
            claim = replace(claim, settings=completed)
        refreshed = self._refresh(claim)
        if isinstance(refreshed, RowOutcome):
            return refreshed
        claim = refreshed
        lease, refused = self._acquire(claim)
        if lease is None:
            return refused
        # The quota after the host slots: a refused row gives its slots back at once, and
        # their release wakes whoever waits for them. Taken first, the quota would count
        # logins a busy host then prevents, and refuse another row of the team meanwhile.
        quota = self.quota.take(claim.team_id, len(claim.hosts), batch=True)
        if not quota.granted:
            woken = tuple(self.gate.release(lease))
            parked = wait_for_quota(self.db, self.clock, claim, quota.wait_seconds)
            return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id,
                              set_aside=parked, quota_blocked=parked,
                              retry_in=quota.wait_seconds if parked else None,
                              woken=woken, freed=lease.hosts)
        revived = resume_after_quota(self.db, self.clock, claim)
        runners = min(revived, self.resume_runners)
        try:
            # No database connection is held while the mailbox is tested.
            probe = probe_claimed(claim, self.cipher, self.prober)
        finally:
            woken = tuple(self.gate.release(lease))
        claim = keep_detected(self.db, claim, probe)
        delay = self.policy.retry_delay(probe, claim.attempt)
        if delay is not None and defer_row(self.db, self.clock, claim, probe, delay):
            outcome = RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id,
                                 retry_in=delay)
        else:
            # The rows this release woke go first: then the runner claims nothing ahead.
            outcome = record_result(self.db, self.clock, claim, probe, None if woken else ahead)
        return replace(outcome, woken=woken, freed=lease.hosts, runners=runners)

    def _refresh(self, claim: ClaimedRow) -> ClaimedRow | RowOutcome:
        """An OAuth2 row's claim with a fresh access token (stored before the probe, so a
        rotated refresh token is never lost), or the outcome of failing to get one."""
        settings = claim.settings or {}
        if self.tokens is None or not is_oauth2(settings):
            return claim
        try:
            tokens = self.cipher.decrypt(claim.credentials or "")
        except CredentialError:
            return claim  # probe_claimed reports it, as for a password row
        try:
            fresh = self.tokens.fresh(claim.team_id, settings.get(OAUTH2_PROVIDER), tokens)
        except RefreshFailed as exc:
            probe = refresh_failure(exc, bool(settings.get("imap")))
            delay = self.policy.retry_delay(probe, claim.attempt, transient=exc.transient)
            if delay is not None and defer_row(self.db, self.clock, claim, probe, delay):
                return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id,
                                  retry_in=delay)
            return record_result(self.db, self.clock, claim, probe)
        if fresh is None:
            return claim
        stored = store_credentials(self.db, claim, self.cipher.encrypt(fresh))
        if stored is None:
            return RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id)
        return stored

    def _acquire(self, claim: ClaimedRow) -> tuple[HostLease | None, RowOutcome]:
        """The row's host slots, or the outcome of setting it aside.

        A busy host: the row is made waiting first (with the lease time as the sweeper's
        safety net should the waiting list be lost), then put on the host's list by a second
        acquire that checks again, so a slot freed in between is never missed.
        """
        aside = RowOutcome(recorded=False, job_id=claim.job_id, row_id=claim.row_id,
                           set_aside=True, busy=tuple(h.lower() for h in claim.hosts))
        decision = self.gate.acquire(claim.hosts)
        if decision.lease is not None:
            return decision.lease, aside
        if not decision.busy:  # the connect spacing: a timed wait
            set_aside(self.db, self.clock, claim, decision.wait_seconds)
            return None, replace(aside, retry_in=decision.wait_seconds)
        if not set_aside(self.db, self.clock, claim, self.lease_seconds):
            return None, aside  # not ours any more
        decision = self.gate.acquire(claim.hosts, waiter=claim.row_id)
        if decision.lease is None:
            # On the list; or a timed wait for the spacing, which a message ends sooner.
            return None, replace(aside, retry_in=None if decision.busy else decision.wait_seconds)
        if take_back(self.db, self.clock, self.lease_seconds, claim):
            return decision.lease, aside
        woken = tuple(self.gate.release(decision.lease))  # cancelled meanwhile
        return None, replace(aside, woken=woken, freed=decision.lease.hosts)
