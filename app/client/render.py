"""What the commands show: a live progress bar on a terminal (a line per change elsewhere, so
logs and CI output stay readable), and rich tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.client.watch import Counts


class ProgressView:
    """Shows each status poll of one job on `console` (stderr, so stdout stays the result)."""

    def __init__(self, console: Console, request_id: str) -> None:
        self.console = console
        self.request_id = request_id
        self._last_line: str | None = None
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[state]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                console=self.console, transient=False)
            self._task = self._progress.add_task(self.request_id, total=None, state="queued",
                                                 counts="")
            self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, status: Mapping[str, Any]) -> None:
        counts = Counts.of(status)
        state = str(status.get("status") or "")
        if self._progress is not None:
            self._progress.update(self._task, total=counts.total or None,
                                  completed=counts.processed, state=state,
                                  counts=counts.line())
            return
        line = f"{state}: {counts.processed}/{counts.total} rows ({counts.line()})"
        if line != self._last_line:  # a line per change, not per poll
            self.console.print(line, highlight=False, soft_wrap=True)
            self._last_line = line


def summary_lines(status: Mapping[str, Any]) -> list[str]:
    counts = Counts.of(status)
    lines = [f"import {status.get('requestId')}: {status.get('status')}, "
             f"{counts.processed}/{counts.total} rows ({counts.line()})"]
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    if status.get("ignoredColumns"):
        lines.append("ignored columns: " + ", ".join(status["ignoredColumns"]))
    if status.get("reportExpired"):
        lines.append("the report has expired (JOB_RETENTION_DAYS); the accounts are kept")
    return lines


def errors_table(errors_by_code: Mapping[str, int], hints: Mapping[str, str | None]) -> Table:
    """Rows per error code, most frequent first, each with what to do about it."""
    table = Table(title="Errors by code", title_justify="left", show_lines=True)
    table.add_column("code", no_wrap=True)
    table.add_column("rows", justify="right")
    table.add_column("hint", overflow="fold")
    for code, count in sorted(errors_by_code.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(code, str(count), hints.get(code) or "")
    return table


def files_lines(files: Mapping[str, Path]) -> list[str]:
    return [f"{kind}: {path}" for kind, path in files.items()]


def accounts_table(payload: Mapping[str, Any]) -> Table:
    page, limit, total = payload.get("page"), payload.get("limit"), payload.get("total") or 0
    pages = max(1, -(-total // limit)) if limit else 1
    table = Table(caption=f"page {page} of {pages}, {total} accounts", caption_justify="left")
    for name, justify in (("id", "right"), ("email", "left"), ("provider", "left"),
                          ("status", "right"), ("smtp", "left"), ("imap", "left"),
                          ("last tested", "left")):
        table.add_column(name, justify=justify)
    for account in payload.get("accounts") or []:
        table.add_row(str(account.get("id")), account.get("email") or "",
                      account.get("emailServiceProvider") or "", str(account.get("status")),
                      _connection(account.get("smtpConnection")),
                      _connection(account.get("imapConnection")),
                      account.get("lastTestedAt") or "never")
    return table


def _connection(connection: Mapping[str, Any] | None) -> str:
    if not connection or not connection.get("result"):
        return "-"
    code = connection.get("errorCode")
    return f"{connection['result']} ({code})" if code else str(connection["result"])
