"""Politeness towards mail providers: at most N concurrent probes per server host, across
every worker on every machine, and optionally a minimum spacing between new connections.

The slots live in Redis as a sorted set per host whose scores are lease expiries, so a worker
that dies holding a slot only holds it until its lease runs out. One Lua script checks and
takes the slots of all of an account's hosts atomically (all or none), on Redis's own clock.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis

KEY_PREFIX = "mailconnect:host"

# KEYS: per host, its slot set then its next-connect key.
# ARGV: lease_ms, token, then per host: limit, interval_ms.
# Returns 0 when taken, -1 when a host is at its cap, else milliseconds until spacing allows.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
local hosts = #KEYS / 2
for i = 1, hosts do
  local slots = KEYS[2 * i - 1]
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) >= tonumber(ARGV[1 + 2 * i]) then return -1 end
  local interval = tonumber(ARGV[2 + 2 * i])
  if interval > 0 then
    local next_at = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if now < next_at then return next_at - now end
  end
end
for i = 1, hosts do
  local slots = KEYS[2 * i - 1]
  redis.call('ZADD', slots, now + lease_ms, ARGV[2])
  redis.call('PEXPIRE', slots, lease_ms * 2)
  local interval = tonumber(ARGV[2 + 2 * i])
  if interval > 0 then
    redis.call('SET', KEYS[2 * i], now + interval, 'PX', interval + 1000)
  end
end
return 0
"""


@dataclass(frozen=True)
class HostLease:
    hosts: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class GateDecision:
    lease: HostLease | None
    wait_seconds: float = 0.0


class HostGate(Protocol):
    def acquire(self, hosts: Sequence[str]) -> GateDecision: ...

    def release(self, lease: HostLease) -> None: ...


class OpenGate:
    """No limits: for tests of everything else, and a single developer's laptop."""

    def acquire(self, hosts: Sequence[str]) -> GateDecision:
        return GateDecision(HostLease(tuple(hosts), ""))

    def release(self, lease: HostLease) -> None:
        pass


class RedisHostGate:
    def __init__(
        self,
        client: redis.Redis,
        max_per_host: int,
        host_limits: Mapping[str, int],
        lease_seconds: float,
        min_interval_ms: int = 0,
        busy_retry_seconds: tuple[float, float] = (0.5, 2.0),
    ) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._max_per_host = max_per_host
        self._host_limits = {host.lower(): limit for host, limit in host_limits.items()}
        self._lease_ms = int(lease_seconds * 1000)
        self._interval_ms = min_interval_ms
        self._busy_retry = busy_retry_seconds

    def limit_for(self, host: str) -> int:
        return self._host_limits.get(host, self._max_per_host)

    def acquire(self, hosts: Sequence[str]) -> GateDecision:
        distinct = tuple(sorted({h.lower() for h in hosts}))
        token = uuid.uuid4().hex
        keys: list[str] = []
        args: list[object] = [self._lease_ms, token]
        for host in distinct:
            keys += [f"{KEY_PREFIX}:{host}:slots", f"{KEY_PREFIX}:{host}:next"]
            args += [self.limit_for(host), self._interval_ms]
        answer = int(self._acquire(keys=keys, args=args))
        if answer == 0:
            return GateDecision(HostLease(distinct, token))
        if answer < 0:
            # Jitter spreads the retries of many rows waiting on one busy host.
            return GateDecision(None, random.uniform(*self._busy_retry))
        return GateDecision(None, answer / 1000 + random.uniform(0, 0.05))

    def release(self, lease: HostLease) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for host in lease.hosts:
                pipe.zrem(f"{KEY_PREFIX}:{host}:slots", lease.token)
            pipe.execute()

    def in_use(self, host: str) -> int:
        """Live slots for a host (for tests and operators)."""
        key = f"{KEY_PREFIX}:{host.lower()}:slots"
        now_s, now_us = self._client.time()
        return self._client.zcount(key, now_s * 1000 + now_us // 1000 + 1, "+inf")
