"""Turning a submitted batch into a job: validate every row, insert all, commit once."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import metrics
from app.clock import Clock
from app.credentials import CredentialCipher
from app.db import Database
from app.importing.rows import KNOWN_FIELDS, AccountInput, validate_row
from app.jobs.idempotency import RequestKey, remember_key, replayed_job
from app.models import (
    ConnectJob,
    ConnectJobRow,
    EmailAccount,
    JobErrorCount,
    JobStatus,
    RowState,
    Team,
)
from app.probe.policy import HostPolicy

DUPLICATE_IN_REQUEST = "duplicate_in_request"
INVALID_FIELDS = "invalid_fields"
ACCOUNT_NOT_FOUND = "account_not_found"
# Never kept in an invalid row's source: the failed-rows file leaves them for the user to fill.
PASSWORD_FIELDS = frozenset({"smtpPassword", "imapPassword", "oauth2AccessToken",
                             "oauth2RefreshToken"})


@dataclass(frozen=True)
class JobOptions:
    """How a job came to be, besides its rows."""

    kind: str = "connect"
    retry_of: str | None = None
    callback_url: str | None = None  # None: the team's default, if it has one
    idempotency: RequestKey | None = None


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    total: int
    invalid: int
    # An earlier request with the same Idempotency-Key created this job; nothing was added.
    replayed: bool = False

    @property
    def needs_probing(self) -> bool:
        return self.invalid < self.total


def new_job_id() -> str:
    return secrets.token_hex(10)


def submit_job(
    db: Database,
    cipher: CredentialCipher,
    clock: Clock,
    team_id: int,
    records: Sequence[Any],
    ignored_columns: Sequence[str] = (),
    options: JobOptions = JobOptions(),
    policy: HostPolicy | None = None,
) -> SubmittedJob:
    """Validate and store a batch as a queued job. No network I/O: a row whose provider must
    be recognised from its domain's MX records is stored pending, and a worker looks it up.
    A row naming a banned host or a port outside `policy` is invalid."""
    now = clock.now()
    job_id = new_job_id()
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    invalid = 0
    for row_no, record in enumerate(records, start=1):
        checked = validate_row(record, defer_detection=True, policy=policy)
        row: dict[str, Any] = {"job_id": job_id, "row_no": row_no, "attempts": 0}
        if isinstance(checked, AccountInput) and checked.email in seen:
            row.update(state=RowState.INVALID, email=checked.email,
                       error_code=DUPLICATE_IN_REQUEST,
                       field_errors=[{"field": "smtpEmailAddress",
                                      "message": f"duplicates row {seen[checked.email]}"}])
        elif isinstance(checked, AccountInput):
            seen[checked.email] = row_no
            row.update(state=RowState.PENDING, email=checked.email, settings=checked.settings(),
                       credentials=cipher.encrypt(checked.secrets()))
        else:
            row.update(state=RowState.INVALID, email=_raw_email(record),
                       error_code=INVALID_FIELDS, field_errors=[e.as_dict() for e in checked])
        if row["state"] == RowState.INVALID:
            invalid += 1
            row["source"] = _source(record)
        rows.append(row)

    return save_job(db, now, job_id, team_id, rows, invalid, ignored_columns, options)


def submit_reconnect(db: Database, clock: Clock, team_id: int, ids: Sequence[Any],
                     options: JobOptions = JobOptions(kind="reconnect")) -> SubmittedJob:
    """Re-test stored accounts as a job. Ids that are not the team's are invalid rows.

    A row names its account and nothing more: no copy of its settings or credentials, which
    the runner reads when it takes the row, so the test is of the account as it is then, and
    its result never writes an old copy back.
    """
    given = [_account_id(value) for value in ids]
    wanted = {i for i in given if i is not None}
    with db.reading() as session:
        emails = dict(session.execute(
            select(EmailAccount.id, EmailAccount.email)
            .where(EmailAccount.team_id == team_id, EmailAccount.id.in_(wanted))
        ).all()) if wanted else {}
    job_id = new_job_id()
    rows: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    invalid = 0
    for row_no, account_id in enumerate(given, start=1):
        row: dict[str, Any] = {"job_id": job_id, "row_no": row_no, "attempts": 0}
        email = emails.get(account_id) if account_id is not None else None
        if email is not None and account_id in seen:
            row.update(state=RowState.INVALID, email=email,
                       error_code=DUPLICATE_IN_REQUEST,
                       field_errors=[{"field": "id",
                                      "message": f"duplicates row {seen[account_id]}"}])
        elif email is not None:
            seen[account_id] = row_no
            row.update(state=RowState.PENDING, email=email, account_id=account_id)
        else:
            row.update(state=RowState.INVALID, error_code=ACCOUNT_NOT_FOUND,
                       field_errors=[{"field": "id", "message": (
                           f"no account {account_id} for this team"
                           if account_id is not None
                           else "must be an account id (a positive whole number)")}])
        invalid += row["state"] == RowState.INVALID
        rows.append(row)
    return save_job(db, clock.now(), job_id, team_id, rows, invalid, (), options)


def _account_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    return None


def save_job(db: Database, now: dt.datetime, job_id: str, team_id: int,
              rows: list[dict[str, Any]], invalid: int, ignored_columns: Sequence[str],
              options: JobOptions = JobOptions()) -> SubmittedJob:
    try:
        with db.transaction() as session:
            callback_url = options.callback_url or session.scalar(
                select(Team.callback_url).where(Team.id == team_id))
            session.add(ConnectJob(
                id=job_id, team_id=team_id, status=JobStatus.QUEUED, total=len(rows),
                processed=invalid, succeeded=0, failed=0, invalid=invalid,
                ignored_columns=sorted(ignored_columns) or None,
                kind=options.kind, retry_of=options.retry_of, callback_url=callback_url,
                created_at=now, last_progress_at=now,
            ))
            session.flush()
            if options.idempotency is not None:
                # Before the rows: a second request with this key waits here for the first.
                remember_key(session, now, team_id, options.idempotency, job_id)
            _insert_rows(session, rows)
            _count_invalid(session, job_id, rows)
    except IntegrityError:
        if options.idempotency is None:
            raise
        winner = replayed_job(db, now, team_id, options.idempotency)
        if winner is None:
            raise
        return SubmittedJob(job_id=winner, total=0, invalid=0, replayed=True)
    metrics.rows_finished("invalid", invalid)  # final at intake, never tested
    return SubmittedJob(job_id=job_id, total=len(rows), invalid=invalid)


def _count_invalid(session: Session, job_id: str, rows: list[dict[str, Any]]) -> None:
    # The status's errorsByCode, kept with the rows so a poll never scans them.
    counts = Counter(row["error_code"] for row in rows if row["state"] == RowState.INVALID)
    session.add_all(JobErrorCount(job_id=job_id, code=code, count=count)
                    for code, count in counts.items())


def _source(record: Any) -> dict[str, Any] | None:
    if not isinstance(record, dict):
        return None
    return {name: _without_nul(value) for name, value in record.items()
            if name in KNOWN_FIELDS and name not in PASSWORD_FIELDS}


def _without_nul(value: Any) -> Any:
    # PostgreSQL refuses NUL in text, nested values included; the row is invalid for it anyway.
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _without_nul(v) for k, v in value.items()}
    return value


ROW_COLUMNS = ("job_id", "row_no", "attempts", "state", "email", "settings", "credentials",
               "error_code", "field_errors", "source", "account_id")
JSON_COLUMNS = frozenset({"settings", "field_errors", "source"})
_COLUMN_LIST = f"{ConnectJobRow.__tablename__} ({', '.join(ROW_COLUMNS)})"
# Only our own table and column names go into the text; every value is bound.
_PLACEHOLDERS = ", ".join("?" * len(ROW_COLUMNS))
_SQLITE_INSERT = f"INSERT INTO {_COLUMN_LIST} VALUES ({_PLACEHOLDERS})"  # noqa: S608


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    # Straight to the driver: COPY on PostgreSQL, executemany on SQLite. SQLAlchemy's per-row
    # parameter processing costs more than the insert itself at 10,000 rows.
    cursor = session.connection().connection.dbapi_connection.cursor()
    values = (_row_values(row) for row in rows)
    if session.get_bind().dialect.name == "postgresql":
        with cursor.copy(f"COPY {_COLUMN_LIST} FROM STDIN") as copy:
            for row_values in values:
                copy.write_row(row_values)
        return
    cursor.executemany(_SQLITE_INSERT, values)


def _row_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(row[c]) if c in JSON_COLUMNS and row.get(c) is not None else row.get(c)
        for c in ROW_COLUMNS
    )


def _raw_email(record: Any) -> str | None:
    if isinstance(record, dict):
        value = record.get("smtpEmailAddress")
        if isinstance(value, str) and value.strip():
            return value.replace("\x00", "").strip()[:320]
    return None
