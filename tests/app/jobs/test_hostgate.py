import threading
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


def test_a_full_host_puts_the_waiter_on_its_list_in_the_same_step(client):
    g = gate(client, max_per_host=1)
    held = g.acquire(["smtp.example.com"]).lease
    refused = g.acquire(["imap.example.com", "smtp.example.com"], waiter=7)
    assert (refused.lease, refused.queued, refused.busy) == (None, True, True)
    assert g.waiting("smtp.example.com") == [7] and g.waiting("imap.example.com") == []
    assert g.in_use("imap.example.com") == 0, "all or nothing, waiter or not"
    assert g.acquire(["imap.example.com"], waiter=8).lease is not None
    assert g.waiting("imap.example.com") == [], "a waiter that got its slots is not listed"
    assert g.release(held) == [7], "whoever frees the slot pops the waiter"
    assert g.waiting("smtp.example.com") == []


def test_a_release_pops_one_waiter_per_freed_host_and_only_into_a_free_slot(client):
    g = gate(client, max_per_host=1)
    smtp = g.acquire(["smtp.example.com"]).lease
    imap = g.acquire(["imap.example.com"]).lease
    for row_id, host in ((1, "smtp.example.com"), (2, "smtp.example.com"),
                         (3, "imap.example.com")):
        assert g.acquire([host], waiter=row_id).queued
    assert g.wake(["smtp.example.com"]) == [], "no free slot: nobody is woken"
    assert g.release(smtp) == [1]
    assert g.wake(["smtp.example.com"]) == [2], "a woken row that could not start passes on"
    assert g.release(imap) == [3]
    assert g.release(imap) == [], "releasing twice wakes nobody more"


def test_without_a_waiter_a_busy_host_says_when_to_ask_again(client):
    g = gate(client, max_per_host=1)
    assert g.acquire(["smtp.example.com"]).lease
    busy = g.acquire(["smtp.example.com"])
    assert busy.busy and not busy.queued and 0.5 <= busy.wait_seconds <= 2.0
    assert g.waiting("smtp.example.com") == []


def test_the_cap_is_exact_and_no_waiter_is_lost_across_threads(redis_url):
    """Eight threads, each a worker with its own gate on one Redis, run 200 jobs of one
    host with a cap of 3, waiting on the list when busy and starting whoever they wake."""
    real = redis.Redis.from_url(redis_url)
    for key in real.scan_iter("mailconnect:host:*"):
        real.delete(key)
    holding, peak, done = set(), [0], []
    lock = threading.Lock()
    todo = list(range(200))

    def run(row_id, g):
        while True:  # returns once the row ran, or it is on the list
            decision = g.acquire(["smtp.example.com"], waiter=row_id)
            if decision.lease is None:
                return
            with lock:
                holding.add(row_id)
                peak[0] = max(peak[0], len(holding))
            time.sleep(0.001)
            with lock:
                holding.discard(row_id)
                done.append(row_id)
            woken = g.release(decision.lease)
            if not woken:
                return
            (row_id,) = woken

    def worker():
        g = gate(real, max_per_host=3)
        while True:
            with lock:
                if not todo:
                    return
                row_id = todo.pop()
            run(row_id, g)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(done) == list(range(200)), "every waiter was woken and ran exactly once"
    assert 2 <= peak[0] <= 3, "the cap is used, never exceeded"
