"""The objects one worker process shares between its task threads, built when the worker is
ready (or by the first task that needs them, if that failed)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from celery import current_app
from celery.signals import worker_process_init, worker_ready

from app.accounts.autoconfig import build_autodiscovery
from app.accounts.detect import JobMxCache
from app.config import load_settings
from app.jobs.runner import ROWS_PER_RUNNER, RetryPolicy, RowProcessor
from app.services import Services, build_services
from workers.publisher import CeleryPublisher


@dataclass
class Runtime:
    services: Services
    rows: RowProcessor
    queue: CeleryPublisher
    bucket_ready: bool = False


log = logging.getLogger(__name__)

_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                settings = load_settings()
                services = build_services(settings)
                _runtime = Runtime(
                    services=services,
                    rows=RowProcessor(
                        db=services.db,
                        clock=services.clock,
                        cipher=services.cipher,
                        prober=services.prober,
                        gate=services.gate,
                        policy=RetryPolicy(
                            attempts=settings.probe_retry_attempts,
                            backoff_seconds=settings.probe_retry_backoff_seconds,
                            backoff_max_seconds=settings.probe_retry_backoff_max_seconds,
                        ),
                        lease_seconds=settings.lease_seconds,
                        quota=services.login_quota,
                        resume_runners=max(1, settings.worker_concurrency // ROWS_PER_RUNNER),
                        # One MX answer cache per job, shared by the process's threads.
                        mx_for_job=JobMxCache(services.mx_resolvers).for_job,
                        # SRV records and autoconfig files, likewise cached per job.
                        discoverer_for_job=JobMxCache(
                            lambda: build_autodiscovery(settings)).for_job,
                        tokens=services.tokens,
                    ),
                    queue=CeleryPublisher(current_app._get_current_object()),
                )
    return _runtime


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs) -> None:
    # A forked child must not share its parent's database sockets.
    if _runtime is not None:
        _runtime.services.db.dispose()


@worker_ready.connect
def _build_before_the_first_task(**_kwargs) -> None:
    # Building takes about half a second of CPU (botocore reads its endpoint data, the prober
    # loads the CA bundle). Done before Celery says "ready.", a worker's first job does not
    # wait for it, and a bad setting shows at start. An error is logged by Celery's signal
    # dispatch, and the first task builds again (and fails as visibly).
    started = time.perf_counter()
    runtime()
    log.info("worker services built in %.2f s", time.perf_counter() - started)
