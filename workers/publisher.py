"""Publishing to Celery by task name, so publishers need not import the tasks."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from app.config import Settings
from workers.factory import (
    DELIVER_WEBHOOK,
    FINISH_JOB,
    PROBE_ROW,
    RUN_ROWS,
    START_JOB,
    make_celery,
)


class CeleryPublisher:
    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryPublisher:
        return cls(make_celery(settings))

    def start_job(self, job_id: str) -> None:
        self._celery.send_task(START_JOB, args=[job_id])

    def wake_rows(self, row_ids: Sequence[int]) -> None:
        with self._celery.producer_or_acquire() as producer:
            for row_id in row_ids:
                self._celery.send_task(PROBE_ROW, args=[row_id], producer=producer)

    def run_rows(self, job_id: str, runners: int) -> None:
        with self._celery.producer_or_acquire() as producer:
            for _ in range(runners):
                self._celery.send_task(RUN_ROWS, args=[job_id], producer=producer)

    def probe_row_later(self, row_id: int, delay_seconds: float) -> None:
        self._celery.send_task(PROBE_ROW, args=[row_id], countdown=delay_seconds)

    def finish_job(self, job_id: str) -> None:
        self._celery.send_task(FINISH_JOB, args=[job_id])

    def deliver_webhook(self, job_id: str, delay_seconds: float | None = None) -> None:
        self._celery.send_task(DELIVER_WEBHOOK, args=[job_id], countdown=delay_seconds)
