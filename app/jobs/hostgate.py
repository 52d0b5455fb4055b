"""Politeness towards mail providers: at most N concurrent probes per server host, across
every worker on every machine, and optionally a minimum spacing between new connections.

The slots live in Redis as a sorted set per host whose scores are lease expiries, so a worker
that dies holding a slot only holds it until its lease runs out. One Lua script checks and
takes the slots of all of an account's hosts atomically (all or none), on Redis's own clock.

A row whose host is full waits on that host's waiting list instead of polling: the same script
that finds the host full appends the row id to the list, so no release can slip in between the
check and the enqueue. Whoever frees a slot pops at most one waiter per freed host and must
start it (or, if it cannot be started any more, call `wake` to pass the slot on).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis

KEY_PREFIX = "mailconnect:host"

# KEYS: per host, its slot set, its next-connect key, then its waiting list.
# ARGV: lease_ms, token, waiter (row id, or '' for none), waiting_ttl_ms, then per host:
# limit, interval_ms.
# Returns 0 when taken, -1 when a host is at its cap (the waiter, if any, is then on that
# host's list), else milliseconds until spacing allows.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
local hosts = #KEYS / 3
for i = 1, hosts do
  local slots = KEYS[3 * i - 2]
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) >= tonumber(ARGV[3 + 2 * i]) then
    if ARGV[3] ~= '' then
      redis.call('RPUSH', KEYS[3 * i], ARGV[3])
      redis.call('PEXPIRE', KEYS[3 * i], tonumber(ARGV[4]))
    end
    return -1
  end
  local interval = tonumber(ARGV[4 + 2 * i])
  if interval > 0 then
    local next_at = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
    if now < next_at then return next_at - now end
  end
end
for i = 1, hosts do
  local slots = KEYS[3 * i - 2]
  redis.call('ZADD', slots, now + lease_ms, ARGV[2])
  redis.call('PEXPIRE', slots, lease_ms * 2)
  local interval = tonumber(ARGV[4 + 2 * i])
  if interval > 0 then
    redis.call('SET', KEYS[3 * i - 1], now + interval, 'PX', interval + 1000)
  end
end
return 0
"""

# KEYS: per host, its slot set then its waiting list. ARGV: token ('' to free nothing), then
# per host its limit. Frees the token's slots, then pops one waiter from each host that has a
# free slot. Returns the popped row ids.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local woken = {}
for i = 1, #KEYS / 2 do
  local slots = KEYS[2 * i - 1]
  if ARGV[1] ~= '' then redis.call('ZREM', slots, ARGV[1]) end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) < tonumber(ARGV[1 + i]) then
    local waiter = redis.call('LPOP', KEYS[2 * i])
    if waiter then woken[#woken + 1] = waiter end
  end
end
return woken
"""


@dataclass(frozen=True)
class HostLease:
    hosts: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class GateDecision:
    lease: HostLease | None
    # When refused: how long to wait before asking again (a busy host without a waiter, or
    # the connect spacing). Zero when the waiter was put on a host's waiting list.
    wait_seconds: float = 0.0
    # The waiter is on a waiting list: a release will hand its id back to be started.
    queued: bool = False
    # Refused because a host is at its cap (else: the connect spacing).
    busy: bool = False


class HostGate(Protocol):
    def acquire(self, hosts: Sequence[str], waiter: int | None = None) -> GateDecision: ...

    def release(self, lease: HostLease) -> list[int]: ...

    def wake(self, hosts: Sequence[str]) -> list[int]: ...


class OpenGate:
    """No limits: for tests of everything else, and a single developer's laptop."""

    def acquire(self, hosts: Sequence[str], waiter: int | None = None) -> GateDecision:
        return GateDecision(HostLease(tuple(hosts), ""))

    def release(self, lease: HostLease) -> list[int]:
        return []

    def wake(self, hosts: Sequence[str]) -> list[int]:
        return []


class RedisHostGate:
    def __init__(
        self,
        client: redis.Redis,
        max_per_host: int,
        host_limits: Mapping[str, int],
        lease_seconds: float,
        min_interval_ms: int = 0,
        busy_retry_seconds: tuple[float, float] = (0.5, 2.0),
        waiting_ttl_seconds: float = 3600.0,
    ) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._max_per_host = max_per_host
        self._host_limits = {host.lower(): limit for host, limit in host_limits.items()}
        self._lease_ms = int(lease_seconds * 1000)
        self._interval_ms = min_interval_ms
        self._busy_retry = busy_retry_seconds
        # A list nobody pushes to for this long is dropped; its rows' wait_until is the
        # safety net that brings them back.
        self._waiting_ttl_ms = int(waiting_ttl_seconds * 1000)

    def limit_for(self, host: str) -> int:
        return self._host_limits.get(host, self._max_per_host)

    def acquire(self, hosts: Sequence[str], waiter: int | None = None) -> GateDecision:
        """Take a slot on every host, or none. A busy host puts `waiter` on its list."""
        distinct = _distinct(hosts)
        token = uuid.uuid4().hex
        keys: list[str] = []
        args: list[object] = [self._lease_ms, token, "" if waiter is None else waiter,
                              self._waiting_ttl_ms]
        for host in distinct:
            keys += [_slots(host), f"{KEY_PREFIX}:{host}:next", _waiting(host)]
            args += [self.limit_for(host), self._interval_ms]
        answer = int(self._acquire(keys=keys, args=args))
        if answer == 0:
            return GateDecision(HostLease(distinct, token))
        if answer < 0:
            if waiter is not None:
                return GateDecision(None, queued=True, busy=True)
            # Jitter spreads the retries of callers that poll (a single-account test).
            return GateDecision(None, random.uniform(*self._busy_retry), busy=True)
        return GateDecision(None, answer / 1000 + random.uniform(0, 0.05))

    def release(self, lease: HostLease) -> list[int]:
        """Free the lease's slots; returns the waiting rows it woke, which the caller starts."""
        return self._free(lease.hosts, lease.token)

    def wake(self, hosts: Sequence[str]) -> list[int]:
        """Pop a waiter from each of these hosts that has a free slot: for a caller whose
        woken row could not be started any more, so the slot it freed is not wasted."""
        return self._free(_distinct(hosts), "")

    def _free(self, hosts: Sequence[str], token: str) -> list[int]:
        if not hosts:
            return []
        keys = [key for host in hosts for key in (_slots(host), _waiting(host))]
        popped = self._release(keys=keys, args=[token, *(self.limit_for(h) for h in hosts)])
        return [int(row_id) for row_id in popped]

    def in_use(self, host: str) -> int:
        """Live slots for a host (for tests and operators)."""
        key = _slots(host.lower())
        now_s, now_us = self._client.time()
        return self._client.zcount(key, now_s * 1000 + now_us // 1000 + 1, "+inf")

    def waiting(self, host: str) -> list[int]:
        """Row ids on a host's waiting list, first to be woken first."""
        return [int(i) for i in self._client.lrange(_waiting(host.lower()), 0, -1)]


def _distinct(hosts: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({h.lower() for h in hosts}))


def _slots(host: str) -> str:
    return f"{KEY_PREFIX}:{host}:slots"


def _waiting(host: str) -> str:
    return f"{KEY_PREFIX}:{host}:waiting"
