"""Following a job until it ends: counts by status from each poll, and a polite schedule."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

FIRST_INTERVAL_SECONDS = 0.5
MAX_INTERVAL_SECONDS = 5.0
BACKOFF = 1.5


@dataclass(frozen=True)
class Counts:
    """A status payload's rows by what happened to them."""

    total: int
    processed: int
    verified: int
    failed: int
    invalid: int
    cancelled: int
    waiting: int

    @classmethod
    def of(cls, status: dict[str, Any]) -> Counts:
        number = lambda name: int(status.get(name) or 0)  # noqa: E731
        waiting = status.get("waiting") or {}
        return cls(total=number("total"), processed=number("processed"),
                   verified=number("succeeded"), failed=number("failed"),
                   invalid=number("invalid"), cancelled=number("cancelled"),
                   waiting=int(waiting.get("rows") or 0))

    @property
    def pending(self) -> int:
        """Rows not final yet: queued, being tested, or set aside for a retry or a slot."""
        return max(self.total - self.processed, 0)

    @property
    def unsuccessful(self) -> int:
        return self.failed + self.invalid + self.cancelled

    def line(self) -> str:
        parts = [f"{self.verified} verified", f"{self.failed} failed"]
        if self.invalid:
            parts.append(f"{self.invalid} invalid")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        parts.append(f"{self.pending} pending")
        if self.waiting:
            parts.append(f"{self.waiting} waiting for the login quota")
        return ", ".join(parts)


class StatusSource(Protocol):
    def status(self, request_id: str) -> dict[str, Any]: ...


def follow(source: StatusSource, request_id: str, on_status: Callable[[dict[str, Any]], None],
           *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll until the job has ended, calling `on_status` with every payload; returns the last.

    The interval grows from half a second to five, so a small job is seen to end at once and
    a long one costs the service a poll every few seconds; a 429 or 503 is waited out inside
    `source` (Retry-After)."""
    interval = FIRST_INTERVAL_SECONDS
    while True:
        status = source.status(request_id)
        on_status(status)
        if status.get("isCompleted"):
            return status
        sleep(interval)
        interval = min(interval * BACKOFF, MAX_INTERVAL_SECONDS)
