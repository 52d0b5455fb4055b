"""State read at scrape time: jobs by status, queue depth, active probes per host."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from app.db import Database
from app.jobs.hostgate import RedisHostGate
from app.models import ConnectJob, JobStatus, Team
from app.state_metrics import StateCollector
from tests.app.test_metrics import samples


def scrape(collector: StateCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(generate_latest(registry).decode())


@pytest.fixture
def client(redis_url):
    # A database of its own on the test Redis, so other tests' keys do not count here.
    url = redis_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def add_jobs(db: Database, statuses: list[JobStatus]) -> None:
    now = dt.datetime.now(dt.UTC)
    with db.transaction() as session:
        team = Team(name=f"t-{uuid.uuid4().hex[:6]}", created_at=now)
        session.add(team)
        session.flush()
        session.add_all(ConnectJob(id=uuid.uuid4().hex, team_id=team.id, status=status,
                                   total=1, processed=0, succeeded=0, failed=0, invalid=0,
                                   created_at=now, last_progress_at=now)
                        for status in statuses)


def test_jobs_by_status_every_status_exported(services, client):
    add_jobs(services.db, [JobStatus.RUNNING, JobStatus.RUNNING, JobStatus.COMPLETED])
    found = scrape(StateCollector(services.db, client, queues=()))
    assert found[("mailconnect_jobs", (("status", "running"),))] == 2
    assert found[("mailconnect_jobs", (("status", "completed"),))] == 1
    assert found[("mailconnect_jobs", (("status", "queued"),))] == 0
    assert found[("mailconnect_metrics_source_up", (("source", "database"),))] == 1


def test_queue_depth_counts_every_priority_level(services, client):
    client.rpush("mailconnect.probe", "a", "b")
    client.rpush("mailconnect.probe\x06\x163", "c")
    client.rpush("mailconnect.control", "d")
    client.hset("unacked", mapping={"t1": "x", "t2": "y"})
    found = scrape(StateCollector(services.db, client,
                                  queues=("mailconnect.probe", "mailconnect.control")))
    assert found[("mailconnect_queue_messages", (("queue", "mailconnect.probe"),))] == 3
    assert found[("mailconnect_queue_messages", (("queue", "mailconnect.control"),))] == 1
    assert found[("mailconnect_queue_unacked_messages", ())] == 2


def test_active_probes_per_host_top_hosts_only(services, client):
    gate = RedisHostGate(client, max_per_host=10, host_limits={}, lease_seconds=30)
    for host, probes in (("a.example", 3), ("b.example", 2), ("c.example", 1)):
        for _ in range(probes):
            assert gate.acquire([host]).lease is not None
    released = gate.acquire(["d.example"]).lease
    gate.release(released)  # a freed slot is no active probe
    found = scrape(StateCollector(services.db, client, queues=(), top_hosts=2))
    per_host = {dict(labels)["host"]: v for (name, labels), v in found.items()
                if name == "mailconnect_host_active_probes"}
    assert per_host == {"a.example": 3, "b.example": 2}
    assert found[("mailconnect_host_active_probes_other", ())] == 1
    assert found[("mailconnect_hosts_active", ())] == 3


def test_a_source_that_is_down_is_skipped_and_said(services):
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    found = scrape(StateCollector(Database("postgresql+psycopg://u:p@127.0.0.1:1/x"), dead,
                                  queues=("mailconnect.probe",)))
    assert found[("mailconnect_metrics_source_up", (("source", "database"),))] == 0
    assert found[("mailconnect_metrics_source_up", (("source", "redis"),))] == 0
    assert not any(name == "mailconnect_jobs" for name, _ in found)
