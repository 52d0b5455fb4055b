"""State metrics, read from the database and Redis when Prometheus scrapes (web only)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from sqlalchemy import func, select

from app.db import Database
from app.jobs.hostgate import KEY_PREFIX as HOST_KEY_PREFIX
from app.models import ConnectJob, JobStatus

log = logging.getLogger(__name__)

# Host labels exported for active probes: the busiest ones. Hosts are named by callers, so
# their number is unbounded; the rest are summed into one series.
TOP_HOSTS = 50


def _queue_keys(queue: str) -> list[str]:
    # kombu's Redis transport keeps a queue's priority levels in separate lists: the name
    # itself for the default level, then name + '\x06\x16' + level (its default steps).
    return [queue, *(f"{queue}\x06\x16{level}" for level in (3, 6, 9))]


class StateCollector:
    """State read at scrape time: jobs by status (one GROUP BY over an indexed column), the
    broker's queue lengths (LLEN) and unacked messages (HLEN), and live host-gate slots. A
    source that cannot be read is skipped, and `mailconnect_metrics_source_up` says so: a
    scrape must not fail, nor wait long, because the database or Redis is down."""

    def __init__(self, db: Database, client: redis.Redis, queues: Iterable[str],
                 top_hosts: int = TOP_HOSTS) -> None:
        self._db = db
        self._redis = client
        self._queues = tuple(queues)
        self._top_hosts = top_hosts

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("mailconnect_metrics_source_up",
                               "1 when the scrape could read this source", labels=["source"])
        for source, families in (("database", self._jobs), ("redis", self._redis_state)):
            try:
                collected = list(families(GaugeMetricFamily))
            except Exception:  # the scrape goes on without this source
                log.warning("metrics: could not read the %s", source, exc_info=True)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from collected
        yield up

    def _jobs(self, gauge: Any) -> Iterator[Any]:
        with self._db.core_reading() as connection:
            counts = dict(connection.execute(
                select(ConnectJob.status, func.count()).group_by(ConnectJob.status)).all())
        family = gauge("mailconnect_jobs", "Jobs by status", labels=["status"])
        for status in JobStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family

    def _redis_state(self, gauge: Any) -> Iterator[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for queue in self._queues:
            for key in _queue_keys(queue):
                pipe.llen(key)
        pipe.hlen("unacked")
        answers = pipe.execute()
        depth = gauge("mailconnect_queue_messages", "Messages waiting in each Celery queue",
                      labels=["queue"])
        levels = len(_queue_keys(""))
        for number, queue in enumerate(self._queues):
            depth.add_metric([queue], sum(answers[number * levels:(number + 1) * levels]))
        yield depth
        yield gauge("mailconnect_queue_unacked_messages", "Messages delivered to a worker and "
                    "not yet acknowledged (running, or held for a countdown)", value=answers[-1])
        yield from self._hosts(gauge)

    def _hosts(self, gauge: Any) -> Iterator[Any]:
        seconds, micros = self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        keys = list(self._redis.scan_iter(match=f"{HOST_KEY_PREFIX}:*:slots", count=1000))
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.zcount(key, now_ms + 1, "+inf")  # live leases: score is the expiry
        live = sorted(((int(n), _host_of(k)) for n, k in zip(pipe.execute(), keys, strict=True)
                       if int(n) > 0), reverse=True)
        per_host = gauge("mailconnect_host_active_probes",
                         f"Probes holding a slot of this host, for the {self._top_hosts} "
                         "busiest hosts", labels=["host"])
        for count, host in live[:self._top_hosts]:
            per_host.add_metric([host], count)
        yield per_host
        yield gauge("mailconnect_host_active_probes_other",
                    "Probes holding slots of hosts beyond the busiest ones",
                    value=sum(count for count, _ in live[self._top_hosts:]))
        yield gauge("mailconnect_hosts_active", "Hosts with at least one probe running",
                    value=len(live))


def _host_of(key: bytes | str) -> str:
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(HOST_KEY_PREFIX) + 1:-len(":slots")]
