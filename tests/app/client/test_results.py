from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.client.results import (
    code_hints,
    download_files,
    exit_code,
    file_path,
    report_hints,
    shared_hint,
)
from app.jobs.report import COLUMNS, INVALID_HINTS
from app.probe.hints import GENERIC_HINTS
from app.probe.model import ErrorCode


def write_report(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def test_report_hints_takes_each_codes_most_frequent_hint(tmp_path):
    report = write_report(tmp_path / "r.csv", [
        {"row": 1, "errorCode": "auth_failed", "hint": "Use a Google app password."},
        {"row": 2, "errorCode": "auth_failed", "hint": "Check the password."},
        {"row": 3, "errorCode": "auth_failed", "hint": "Check the password."},
        {"row": 4, "errorCode": "connection_refused", "hint": "'-check the port"},
        {"row": 5, "status": "connected"},
        {"row": 6, "errorCode": "protocol_error", "hint": ""},
    ])
    assert report_hints(report) == {"auth_failed": "Check the password.",
                                    "connection_refused": "-check the port"}


def test_code_hints_prefers_the_report_and_falls_back_to_the_shared_module(tmp_path):
    report = write_report(tmp_path / "r.csv", [
        {"row": 1, "errorCode": "auth_failed", "hint": "From the report."}])
    errors = {"auth_failed": 1, "invalid_fields": 2, "dns_not_found": 1, "from_the_future": 1}
    assert code_hints(errors, report) == {
        "auth_failed": "From the report.",
        "invalid_fields": INVALID_HINTS["invalid_fields"],
        "dns_not_found": GENERIC_HINTS[ErrorCode.DNS_NOT_FOUND],
        "from_the_future": None,
    }
    assert code_hints({"auth_failed": 1}, None) == {"auth_failed": shared_hint("auth_failed")}
    assert shared_hint("auth_failed") == GENERIC_HINTS[ErrorCode.AUTH_FAILED]


@pytest.mark.parametrize(("status", "expected"), [
    ({"status": "completed", "total": 2, "processed": 2, "succeeded": 2}, 0),
    ({"status": "completed", "total": 0, "processed": 0}, 0),
    ({"status": "completed", "total": 2, "processed": 2, "succeeded": 1, "failed": 1}, 1),
    ({"status": "completed", "total": 2, "processed": 2, "succeeded": 1, "invalid": 1}, 1),
    # Rows neither verified nor counted as failed (none should be) are not "all verified".
    ({"status": "completed", "total": 2, "processed": 2, "succeeded": 1}, 1),
    ({"status": "cancelled", "total": 2, "processed": 2, "succeeded": 2}, 1),
    ({"status": "failed", "total": 2, "processed": 2, "succeeded": 2}, 1),
])
def test_exit_code(status, expected):
    assert exit_code(status) == expected


def test_files_go_next_to_the_input(tmp_path):
    class Store:
        def __init__(self) -> None:
            self.asked: list[tuple[str, Path]] = []

        def download(self, url: str, to: Path) -> Path:
            self.asked.append((url, to))
            return to

    beside = tmp_path / "in" / "accounts.json"
    assert file_path(beside, "report") == tmp_path / "in" / "accounts.report.csv"
    store = Store()
    saved = download_files(store, {"reportURL": "http://r", "failedRowsURL": None}, beside)
    assert saved == {"report": tmp_path / "in" / "accounts.report.csv"}
    saved = download_files(store, {"reportURL": "http://r", "failedRowsURL": "http://f"}, beside)
    assert saved["failed-rows"] == tmp_path / "in" / "accounts.failed-rows.csv"
    assert store.asked[-1] == ("http://f", tmp_path / "in" / "accounts.failed-rows.csv")
