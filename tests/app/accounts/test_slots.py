"""Single-account calls take the job runners' per-host slots (a real Redis, a cap of 1)."""

import pytest
import redis

from app.accounts.slots import HostBusy, HostSlots
from app.jobs.hostgate import GateDecision, HostLease, RedisHostGate


@pytest.fixture
def gate(redis_url) -> RedisHostGate:
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("mailconnect:host:*"):
        client.delete(key)
    return RedisHostGate(client, max_per_host=1, host_limits={}, lease_seconds=30)


def test_waits_until_the_deadline_then_reports_the_busy_host(gate):
    held = gate.acquire(["smtp.example.com"]).lease
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    slots = HostSlots(gate, wait_seconds=2, monotonic=lambda: now[0], sleep=sleep)
    with pytest.raises(HostBusy) as busy, slots.held(["SMTP.example.com", "imap.example.com"]):
        pytest.fail("the block must not run without its slots")
    assert busy.value.hosts == ("imap.example.com", "smtp.example.com")
    assert busy.value.retry_after == 2
    assert "smtp.example.com" in str(busy.value)
    assert slept and max(slept) <= slots.poll_seconds, "it polls, it does not sleep it out"
    assert sum(slept) >= 2
    assert gate.in_use("imap.example.com") == 0, "all of an account's hosts or none"

    gate.release(held)
    with slots.held(["smtp.example.com", "imap.example.com"]):
        assert gate.in_use("smtp.example.com") == 1
    assert gate.in_use("smtp.example.com") == 0, "released after the block"


def test_a_slot_freed_during_the_wait_is_taken(gate):
    held = gate.acquire(["smtp.example.com"]).lease
    polls = []

    def sleep(_seconds: float) -> None:
        polls.append(1)
        if len(polls) == 3:
            gate.release(held)

    with HostSlots(gate, wait_seconds=60, sleep=sleep).held(["smtp.example.com"]):
        assert len(polls) == 3


def test_released_when_the_block_raises(gate):
    with pytest.raises(RuntimeError), HostSlots(gate, wait_seconds=1).held(["smtp.example.com"]):
        raise RuntimeError("probe blew up")
    assert gate.in_use("smtp.example.com") == 0


class WakingGate:
    """A gate whose releases wake rows off the host's waiting list (the runner's gate API)."""

    def __init__(self, woken: list[int]) -> None:
        self.woken = woken

    def acquire(self, hosts, waiter=None) -> GateDecision:
        return GateDecision(HostLease(tuple(hosts), "t"))

    def release(self, lease: HostLease) -> list[int]:
        return self.woken


def test_rows_woken_by_the_release_are_published():
    published: list[list[int]] = []
    with HostSlots(WakingGate([7, 9]), wait_seconds=1, on_woken=published.append).held(["h"]):
        pass
    assert published == [[7, 9]]

    def broken(_ids):
        raise ConnectionError("broker down")

    # The user's test finished; a broker outage must not turn its answer into an error.
    with HostSlots(WakingGate([7]), wait_seconds=1, on_woken=broken).held(["h"]):
        pass
