"""The failed-rows file: only a job's failed and invalid rows, in the columns of a bulk upload,
so a user can fix them in a spreadsheet and submit the file again.

Password columns are there but always empty (the user fills them in), and every cell that a
spreadsheet would run as a formula is neutralised (app.jobs.csvsafe), as in the report.
"""

from __future__ import annotations

import secrets
from typing import IO, Any

import pandas as pd
from sqlalchemy import select

from app.accounts.retest import stored_settings
from app.accounts.saving import SENDING_COLUMNS
from app.db import Database
from app.importing.rows import AUTH, OAUTH2_PROVIDER, BulkRow
from app.jobs.csvsafe import write_csv
from app.jobs.intake import PASSWORD_FIELDS
from app.models import EmailAccount

BULK_FIELDS: tuple[str, ...] = tuple(BulkRow.model_fields)
_BULK_FIELD_SET = frozenset(BULK_FIELDS)
COLUMNS = [*BULK_FIELDS, "errorCode", "error", "hint"]


def failed_rows_key(team_id: int, job_id: str) -> str:
    # The random part keeps the file's name unguessable from the requestId alone.
    return f"failed-rows/{team_id}/{job_id}-{secrets.token_urlsafe(16)}.csv"


class FailedRowsWriter:
    """A RowSink for write_report: writes the failed and invalid rows it is shown to `out`."""

    def __init__(self, db: Database, team_id: int, out: IO[str]) -> None:
        self._db = db
        self._team_id = team_id
        self._out = out
        self.count = 0

    def add(self, page: list[Any], report_rows: list[dict[str, Any]]) -> None:
        chosen = [(raw, report) for raw, report in zip(page, report_rows, strict=True)
                  if report["status"] in ("failed", "invalid")]
        if not chosen:
            return
        # Re-test rows (reconnect, retry) carry no settings: the account has them.
        accounts = self._accounts({raw.account_id for raw, _ in chosen
                                   if raw.settings is None and raw.account_id is not None})
        records = [_record(raw, report, accounts) for raw, report in chosen]
        frame = pd.DataFrame.from_records(records, columns=COLUMNS)
        write_csv(frame, self._out, header=self.count == 0)
        self.count += len(frame)

    def _accounts(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        with self._db.reading() as session:
            found = session.scalars(select(EmailAccount).where(
                EmailAccount.team_id == self._team_id, EmailAccount.id.in_(ids)))
            return {a.id: {**stored_settings(a), "sending": _sending(a)} for a in found}


def _sending(account: EmailAccount) -> dict[str, Any]:
    return {name: getattr(account, column) for name, column in SENDING_COLUMNS.items()
            if getattr(account, column) is not None}


def _record(raw: Any, report: dict[str, Any], accounts: dict[int, dict[str, Any]]
            ) -> dict[str, Any]:
    if report["status"] == "invalid":
        fields = dict(raw.source or {"smtpEmailAddress": raw.email})
        error = report["validationErrors"]
    else:
        settings = raw.settings or accounts.get(raw.account_id) or {"email": raw.email}
        fields = _fields_from_settings(settings)
        error = (report["smtpError"] if report["errorCode"] == report["smtpErrorCode"]
                 else report["imapError"])
    # Only the fields the row has are converted: most of a row's 33 columns are blank.
    record = dict.fromkeys(BULK_FIELDS)
    record.update((name, _cell(value)) for name, value in fields.items()
                  if name in _BULK_FIELD_SET)
    record.update({name: "" for name in PASSWORD_FIELDS})
    record.update(errorCode=report["errorCode"], error=error, hint=report["hint"])
    return record


def _fields_from_settings(settings: dict[str, Any]) -> dict[str, Any]:
    smtp, imap = settings.get("smtp") or {}, settings.get("imap")
    fields: dict[str, Any] = {
        "emailServiceProvider": settings.get("provider"),
        "fromFirstName": settings.get("fromFirstName"),
        "fromLastName": settings.get("fromLastName"),
        "fromName": settings.get("fromName"),
        "smtpEmailAddress": smtp.get("email") or settings.get("email"),
        "smtpUserName": smtp.get("username"),
        "smtpHost": smtp.get("host"),
        "smtpPort": smtp.get("port"),
        "smtpEncryption": smtp.get("encryption"),
        "smtpOnly": imap is None and bool(smtp),
        # An OAuth2 row stays one; its tokens are left blank like passwords.
        "authType": settings.get(AUTH),
        "oauth2Provider": settings.get(OAUTH2_PROVIDER),
        **(settings.get("sending") or {}),
    }
    if imap:
        fields.update(imapEmailAddress=imap.get("email"), imapUserName=imap.get("username"),
                      imapHost=imap.get("host"), imapPort=imap.get("port"),
                      imapEncryption=imap.get("encryption"))
    return fields


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return None
    if isinstance(value, int | float):
        return str(value)  # text, so a column with blanks does not turn 587 into 587.0
    return value

