"""The per-row CSV report, built with pandas in bounded memory: one chunk of rows at a time.

Every text cell is neutralised (app.jobs.csvsafe), so no cell runs as a spreadsheet formula.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any, Protocol

import pandas as pd
from sqlalchemy import select

from app.db import Database
from app.jobs.csvsafe import write_csv
from app.jobs.intake import ACCOUNT_NOT_FOUND, DUPLICATE_IN_REQUEST, INVALID_FIELDS
from app.models import ConnectJobRow, RowState
from app.probe.hints import hint_for

COLUMNS = [
    "row", "email", "status", "errorCode", "validationErrors", "accountId", "accountStatus",
    "smtpResult", "smtpErrorCode", "smtpError", "imapResult", "imapErrorCode", "imapError",
    "hint", "filledIn", "attempts", "durationMs",
]
INVALID_HINTS = {
    INVALID_FIELDS: "Fix the fields named in validationErrors and submit the row again.",
    DUPLICATE_IN_REQUEST: "This email appears earlier in the same request; only the first "
                          "row is tested.",
    ACCOUNT_NOT_FOUND: "Use the id of one of this team's accounts (GET /v1/email-accounts).",
}
# A chunk (its rows, their report dicts and the frame) is the report's working set, about
# 7 KB a row, built in a worker whose allocator keeps that peak as RSS afterwards. 1,000
# rows hold it near 7 MB (5,000 took 35 MB), for one more page query per 1,000 rows.
CHUNK_ROWS = 1000

rows = ConnectJobRow.__table__


class RowSink(Protocol):
    """Something else built in the report's one pass over the rows (the failed-rows file)."""

    def add(self, page: list[Any], report_rows: list[dict[str, Any]]) -> None: ...


def write_report(db: Database, job_id: str, out: IO[str], also: RowSink | None = None) -> int:
    """Write the job's report to `out`, in input order; returns the number of rows. `also`
    sees every page of rows with their report rows, so the rows are read only once."""
    written = 0
    for page in _pages(db, job_id):
        chunk = [_report_row(r) for r in page]
        if also is not None:
            also.add(page, chunk)
        frame = pd.DataFrame.from_records(chunk, columns=COLUMNS)
        for column in ("accountId", "accountStatus", "durationMs"):
            frame[column] = frame[column].astype("Int64")
        write_csv(frame, out, header=written == 0)
        written += len(frame)
    if written == 0:
        write_csv(pd.DataFrame(columns=COLUMNS), out, header=True)
    return written


def _pages(db: Database, job_id: str) -> Iterator[list[Any]]:
    # Keyset pages, each its own short read: memory stays one chunk deep whatever the job's
    # size, and no long transaction holds back writers.
    columns = (rows.c.row_no, rows.c.email, rows.c.state, rows.c.error_code,
               rows.c.field_errors, rows.c.account_id, rows.c.account_status,
               rows.c.smtp_result, rows.c.smtp_error_code, rows.c.smtp_error,
               rows.c.imap_result, rows.c.imap_error_code, rows.c.imap_error,
               rows.c.attempts, rows.c.duration_ms, rows.c.settings, rows.c.source)
    last = 0
    while True:
        with db.reading() as session:
            page = session.execute(
                select(*columns)
                .where(rows.c.job_id == job_id, rows.c.row_no > last)
                .order_by(rows.c.row_no)
                .limit(CHUNK_ROWS)
            ).all()
        if not page:
            return
        last = page[-1].row_no
        yield page


def _report_row(r: Any) -> dict[str, Any]:
    if r.state == RowState.INVALID:
        status = "invalid"
    elif r.state == RowState.DONE:
        status = "connected" if r.account_status == 1 else "failed"
    elif r.state == RowState.CANCELLED:
        status = "cancelled"  # its job was cancelled before it was tested
    else:
        status = "unprocessed"
    field_errors = "; ".join(f"{e['field']}: {e['message']}" for e in r.field_errors or [])
    error_code = r.error_code
    if status == "failed":
        # A tested row's own code says its account was deleted meanwhile, which outranks
        # what the servers said; otherwise the protocols' codes say why it failed.
        error_code = r.error_code or r.smtp_error_code or r.imap_error_code
    return {
        "row": r.row_no,
        "email": r.email,
        "status": status,
        "errorCode": error_code,
        "validationErrors": field_errors or None,
        "accountId": r.account_id,
        "accountStatus": r.account_status,
        "smtpResult": r.smtp_result or "skipped",
        "smtpErrorCode": r.smtp_error_code,
        "smtpError": r.smtp_error,
        "imapResult": r.imap_result or "skipped",
        "imapErrorCode": r.imap_error_code,
        "imapError": r.imap_error,
        "hint": _hint(r, status),
        "filledIn": ", ".join((r.settings or {}).get("filled") or []) or None,
        "attempts": r.attempts,
        "durationMs": r.duration_ms,
    }


def _hint(r: Any, status: str) -> str | None:
    if status == "invalid":
        return INVALID_HINTS.get(r.error_code)
    provider = (r.settings or {}).get("provider")
    hints = [hint_for(code, provider, message)
             for code, message in ((r.smtp_error_code, r.smtp_error),
                                   (r.imap_error_code, r.imap_error)) if code]
    return " ".join(dict.fromkeys(h for h in hints if h)) or None
