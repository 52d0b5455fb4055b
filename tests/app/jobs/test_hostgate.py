import time

import fakeredis
import pytest
import redis

from app.jobs.hostgate import RedisHostGate


@pytest.fixture(params=["fakeredis", "redis"])
def client(request):
    if request.param == "fakeredis":
        return fakeredis.FakeRedis()
    real = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    for key in real.scan_iter("mailconnect:host:*"):
        real.delete(key)
    return real


def gate(client, **kwargs) -> RedisHostGate:
    options = {"max_per_host": 2, "host_limits": {}, "lease_seconds": 30}
    options.update(kwargs)
    return RedisHostGate(client, **options)


def test_cap_per_host_across_gates(client):
    first, second = gate(client), gate(client)  # two workers sharing one Redis
    leases = [first.acquire(["smtp.example.com"]).lease, second.acquire(["SMTP.example.com"]).lease]
    assert all(leases)
    busy = first.acquire(["smtp.example.com"])
    assert busy.lease is None and 0.5 <= busy.wait_seconds <= 2.0
    assert first.acquire(["imap.example.com"]).lease is not None, "other hosts keep flowing"
    second.release(leases[0])
    assert first.acquire(["smtp.example.com"]).lease is not None


def test_all_or_nothing_for_an_accounts_hosts(client):
    g = gate(client, max_per_host=1)
    assert g.acquire(["imap.example.com"]).lease
    assert g.acquire(["smtp.example.com", "imap.example.com"]).lease is None
    assert g.in_use("smtp.example.com") == 0, "no slot held on the free host after a refusal"


def test_same_host_for_both_protocols_takes_one_slot(client):
    g = gate(client, max_per_host=1)
    lease = g.acquire(["mail.example.com", "mail.example.com"]).lease
    assert lease and lease.hosts == ("mail.example.com",)


def test_per_host_override(client):
    g = gate(client, host_limits={"smtp.gmail.com": 1})
    assert g.acquire(["smtp.gmail.com"]).lease
    assert g.acquire(["smtp.gmail.com"]).lease is None
    assert g.limit_for("other.example.com") == 2


def test_a_crashed_holder_frees_its_slot_when_the_lease_ends(client):
    g = gate(client, max_per_host=1, lease_seconds=0.2)
    assert g.acquire(["smtp.example.com"]).lease  # never released: its worker died
    assert g.acquire(["smtp.example.com"]).lease is None
    time.sleep(0.25)
    assert g.acquire(["smtp.example.com"]).lease is not None


def test_minimum_spacing_between_connections(client):
    g = gate(client, max_per_host=10, min_interval_ms=200)
    assert g.acquire(["smtp.example.com"]).lease
    wait = g.acquire(["smtp.example.com"])
    assert wait.lease is None and 0 < wait.wait_seconds <= 0.3
    time.sleep(wait.wait_seconds)
    assert g.acquire(["smtp.example.com"]).lease
