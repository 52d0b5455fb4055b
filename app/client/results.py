"""What a finished job leaves the command with: its files next to the input, a hint for
each error code, and the exit code."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from app.client.watch import Counts

EXIT_ALL_VERIFIED = 0
EXIT_SOME_FAILED = 1  # failed, invalid or cancelled rows, or a job that could not finish
EXIT_ERROR = 2  # usage, or a request the service refused or could not be sent (click's too)

# The status payload's link -> the suffix its file gets next to the input.
FILES = {"reportURL": "report", "failedRowsURL": "failed-rows"}


class Downloader(Protocol):
    def download(self, url: str, to: Path) -> Path: ...


def file_path(beside: Path, kind: str) -> Path:
    """accounts.csv -> accounts.report.csv (always .csv: the service writes CSV)."""
    return beside.with_name(f"{beside.stem}.{kind}.csv")


def download_files(client: Downloader, status: Mapping[str, Any],
                   beside: Path) -> dict[str, Path]:
    """Save each file the status links to next to `beside`: {"report": path, ...}."""
    saved = {}
    for link, kind in FILES.items():
        url = status.get(link)
        if url:
            saved[kind] = client.download(url, file_path(beside, kind))
    return saved


def report_hints(report: Path) -> dict[str, str]:
    """Each error code's hint as the service wrote it in the report: the most frequent one
    among the code's rows (hints depend on the provider, so one code may have several)."""
    found: dict[str, Counter[str]] = {}
    with report.open(newline="", encoding="utf-8-sig") as lines:
        for row in csv.DictReader(lines):
            code, hint = (row.get("errorCode") or "").strip(), (row.get("hint") or "").strip()
            if code and hint:
                # The report's text cells are guarded against spreadsheet formulas with a "'".
                found.setdefault(code, Counter())[hint.removeprefix("'")] += 1
    return {code: hints.most_common(1)[0][0] for code, hints in found.items()}


def shared_hint(code: str) -> str | None:
    """The service's generic hint for a code, from the modules it uses itself; for when no
    report was downloaded (or it lacks the code)."""
    from app.jobs.report import INVALID_HINTS
    from app.probe.hints import hint_for

    return INVALID_HINTS.get(code) or hint_for(code, None)


def code_hints(errors_by_code: Mapping[str, int], report: Path | None) -> dict[str, str | None]:
    """A hint for each code of errorsByCode: the report's where it has one, else the shared
    module's."""
    try:
        from_report = report_hints(report) if report is not None else {}
    except (OSError, UnicodeDecodeError, csv.Error):  # the shared hints are still right
        from_report = {}
    return {code: from_report.get(code) or shared_hint(code) for code in errors_by_code}


def exit_code(status: Mapping[str, Any]) -> int:
    """0 when every row was verified; 1 when any row was not, or the job failed."""
    counts = Counts.of(status)
    if status.get("status") != "completed" or counts.unsuccessful or counts.verified < counts.total:
        return EXIT_SOME_FAILED
    return EXIT_ALL_VERIFIED
