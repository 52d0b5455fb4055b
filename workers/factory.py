"""Builds the Celery app from Settings. Redis is the bell; the database is the ledger."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import Settings, load_settings

PROBE_QUEUE = "mailconnect.probe"
CONTROL_QUEUE = "mailconnect.control"

START_JOB = "mailconnect.start_job"
PROBE_ROW = "mailconnect.probe_row"
RUN_ROWS = "mailconnect.run_rows"
FINISH_JOB = "mailconnect.finish_job"
SWEEP = "mailconnect.sweep"
DELIVER_WEBHOOK = "mailconnect.deliver_webhook"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("mailconnect", broker=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        # A thread or child that dies mid-task must not ack its message.
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Unacked messages come back after this; every lease and retry countdown stays below it
        # (Settings refuses to start otherwise).
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout,
            # kombu looks for messages past their timeout only every interval x throttle seconds
            # (100 s by default), so a short timeout would hardly matter. One look is a ZRANGE
            # per worker: look every tenth of the timeout, at least every 10 s.
            "unacked_restore_interval": max(1, min(10, settings.broker_visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
        },
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        worker_soft_shutdown_timeout=min(60.0, settings.probe_timeout_seconds * 2),
        task_queues=[Queue(CONTROL_QUEUE), Queue(PROBE_QUEUE)],
        task_default_queue=PROBE_QUEUE,
        task_routes={
            START_JOB: {"queue": CONTROL_QUEUE},
            FINISH_JOB: {"queue": CONTROL_QUEUE},
            SWEEP: {"queue": CONTROL_QUEUE},
            DELIVER_WEBHOOK: {"queue": CONTROL_QUEUE},
            PROBE_ROW: {"queue": PROBE_QUEUE},
            RUN_ROWS: {"queue": PROBE_QUEUE},
        },
        beat_schedule={
            "sweep": {"task": SWEEP, "schedule": settings.sweep_interval_seconds},
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return app

