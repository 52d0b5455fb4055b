"""Readiness: can this process do its work now? The database (SELECT 1), Redis (PING) and the
report bucket (HeadBucket), each with a short timeout, checked side by side.

Liveness (/healthz) is another question and checks nothing: a web process whose database is
down is alive, and restarting it would not bring the database back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import redis
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.storage import s3_report_store

log = logging.getLogger(__name__)

Check = Callable[[], None]  # returns when the dependency answered, raises otherwise


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    milliseconds: int
    # What went wrong, by kind only (the exception's type, or "timeout"): /readyz answers
    # anyone, and a driver's message can name internal hosts. The log has the whole message.
    error: str | None = None


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, CheckResult]

    @property
    def ready(self) -> bool:
        return all(result.ok for result in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, result in self.checks.items() if not result.ok]


def database_check(db: Database) -> Check:
    def check() -> None:
        with db.core_reading() as connection:
            connection.execute(text("SELECT 1"))
    return check


def redis_check(url: str, timeout: float) -> Check:
    # A client of its own: the shared ones wait longer, and retry.
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def check() -> None:
        client.ping()
    return check


def bucket_check(settings: Settings, timeout: float) -> Check:
    store = s3_report_store(settings, timeout=timeout)

    def check() -> None:
        # A bucket not made yet is made, as the worker's first report would: otherwise a new
        # deployment's web pods never turn ready, and no job can make it.
        store.ensure_bucket()
    return check


def standard_checks(settings: Settings, db: Database) -> dict[str, Check]:
    timeout = settings.readiness_timeout_seconds
    return {"database": database_check(db), "redis": redis_check(settings.redis_url, timeout),
            "bucket": bucket_check(settings, timeout)}


class ReadinessProbe:
    """Runs the checks in parallel; a check still running after `timeout` counts as failed
    (its thread is left to finish on its own, so one hung dependency cannot hold the answer)."""

    def __init__(self, checks: Mapping[str, Check], timeout: float) -> None:
        self._checks = dict(checks)
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._checks) * 2),
                                        thread_name_prefix="readyz")

    def run(self) -> Readiness:
        started = time.monotonic()
        futures = {name: self._pool.submit(_timed, check) for name, check in self._checks.items()}
        results: dict[str, CheckResult] = {}
        for name, future in futures.items():
            left = max(0.0, self._timeout - (time.monotonic() - started))
            try:
                results[name] = future.result(timeout=left)
            except FutureTimeout:
                log.warning("readiness: %s did not answer within %g s", name, self._timeout)
                results[name] = CheckResult(False, round(self._timeout * 1000), "timeout")
        for name, result in results.items():
            if not result.ok and result.error != "timeout":
                log.warning("readiness: %s is not ready (%s)", name, result.error)
        return Readiness(results)


def _timed(check: Check) -> CheckResult:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:  # any failure means "not ready", named by its kind
        log.info("readiness check failed", exc_info=True)
        return CheckResult(False, _ms(started), type(exc).__name__)
    return CheckResult(True, _ms(started))


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
