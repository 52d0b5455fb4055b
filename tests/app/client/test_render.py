from __future__ import annotations

import io

from rich.console import Console

from app.client.render import ProgressView, accounts_table, errors_table, summary_lines


def console(terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), width=200, force_terminal=terminal, color_system=None)


def text(of: Console) -> str:
    return of.file.getvalue()


def status(state: str, processed: int, succeeded: int, failed: int, **extra) -> dict:
    return {"requestId": "job1", "status": state, "total": 4, "processed": processed,
            "succeeded": succeeded, "failed": failed, "invalid": 0, "cancelled": 0, **extra}


def test_progress_off_a_terminal_is_a_line_per_change():
    out = console()
    with ProgressView(out, "job1") as view:
        for update in (status("queued", 0, 0, 0), status("running", 1, 1, 0),
                       status("running", 1, 1, 0), status("completed", 4, 3, 1)):
            view.update(update)
    assert text(out).splitlines() == [
        "queued: 0/4 rows (0 verified, 0 failed, 4 pending)",
        "running: 1/4 rows (1 verified, 0 failed, 3 pending)",
        "completed: 4/4 rows (3 verified, 1 failed, 0 pending)",
    ]


def test_progress_on_a_terminal_is_a_bar_with_the_counts():
    out = console(terminal=True)
    with ProgressView(out, "job1") as view:
        view.update(status("running", 2, 1, 1))
    shown = text(out)
    assert "2/4" in shown and "1 verified, 1 failed, 2 pending" in shown and "━" in shown


def test_errors_table_lists_codes_most_frequent_first_with_hints():
    out = console()
    out.print(errors_table({"dns_not_found": 1, "auth_failed": 3, "invalid_fields": 1},
                           {"auth_failed": "Check the password.", "dns_not_found": None,
                            "invalid_fields": "Fix the fields."}))
    lines = [line for line in text(out).splitlines() if "_" in line]
    cells = [[cell.strip() for cell in line.split("│")[1:4]] for line in lines]
    assert cells == [["auth_failed", "3", "Check the password."], ["dns_not_found", "1", ""],
                     ["invalid_fields", "1", "Fix the fields."]]


def test_summary_names_the_error_and_ignored_columns():
    lines = summary_lines(status("failed", 4, 3, 1, error="report store unavailable",
                                 ignoredColumns=["notes"]))
    assert lines == ["import job1: failed, 4/4 rows (3 verified, 1 failed, 0 pending)",
                     "error: report store unavailable", "ignored columns: notes"]


def test_accounts_table():
    out = console()
    out.print(accounts_table({"page": 2, "limit": 1, "total": 3, "accounts": [{
        "id": 7, "email": "a@x.test", "emailServiceProvider": "zoho", "status": 0,
        "smtpConnection": {"result": "failed", "errorCode": "auth_failed"},
        "imapConnection": {"result": "ok", "errorCode": None}, "lastTestedAt": None}]}))
    shown = text(out)
    assert "a@x.test" in shown and "failed (auth_failed)" in shown and "never" in shown
    assert "page 2 of 3, 3 accounts" in shown
