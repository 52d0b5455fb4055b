"""How the domain rings the bell. The broker only says "look at this id"; the database holds
the truth, so a lost or repeated message delays work but never loses or doubles it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class JobPublisher(Protocol):
    def start_job(self, job_id: str) -> None: ...

    def run_rows(self, job_id: str, runners: int) -> None:
        """Announce `runners` runners of the job: each tests its next pending rows."""
        ...

    def wake_rows(self, row_ids: Sequence[int]) -> None:
        """Start these waiting rows now (a freed host slot woke them): one probe_row each,
        which claims the row and then goes on as a runner of its job."""
        ...

    def probe_row_later(self, row_id: int, delay_seconds: float) -> None: ...

    def finish_job(self, job_id: str) -> None: ...
