"""The login quota per team: at most TEAM_MAX_LOGINS_PER_HOUR logins to mail servers in any
rolling hour, counted across every worker and web process, so that one tenant cannot get the
service's addresses blocklisted by the big providers.

A sliding log, not a fixed window: a fixed window lets a team make its whole quota at 12:59
and again at 13:00, twice the limit within two minutes, which is exactly the burst providers
punish. The log is a Redis sorted set per team, one member per login scored by its time on
Redis's own clock (shared by every machine); 5,000 members are a few hundred kilobytes, and a
team that stops logging in lets its key expire. GCRA would need one number instead of a log,
but it spreads logins evenly over the hour instead of allowing "at most N in any hour".

One Lua script trims the log, checks and adds a test's logins (SMTP and IMAP: two; one
protocol: one) atomically, or answers how long until enough of the log has aged out.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Protocol

import redis

KEY_PREFIX = "mailconnect:quota"
# The status's `waiting.reason`, and the 429 errorCode of a single-account test.
TEAM_LOGIN_QUOTA = "team_login_quota"

# KEYS: the team's log. ARGV: limit, window_ms, logins, token, batch (logins).
# Returns 0 when the logins were counted, else milliseconds until the log has room for them
# (and, with a batch, until at least that many logins have aged out: see RedisLoginQuota.take).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, logins = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used + logins <= limit then
  for i = 1, logins do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local expire = math.min(used, math.max(used + logins - limit, tonumber(ARGV[5])))
if expire < 1 then return window end
local entry = redis.call('ZRANGE', KEYS[1], expire - 1, expire - 1, 'WITHSCORES')
return math.max(1, tonumber(entry[2]) + window - now)
"""


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    # When refused: seconds until the team's log has room again.
    wait_seconds: float = 0.0


class QuotaExceeded(Exception):
    """A single-account test refused by its team's login quota (the web layer's 429)."""

    def __init__(self, wait_seconds: float) -> None:
        self.retry_after = max(1, math.ceil(wait_seconds))
        super().__init__(
            f"this team has made its TEAM_MAX_LOGINS_PER_HOUR logins to mail servers in the "
            f"last hour; try again in {self.retry_after} s")


class LoginQuota(Protocol):
    def take(self, team_id: int, logins: int, batch: bool = False) -> QuotaDecision: ...


class OpenQuota:
    """No quota: for tests of everything else."""

    def take(self, team_id: int, logins: int, batch: bool = False) -> QuotaDecision:
        return QuotaDecision(True)


class RedisLoginQuota:
    def __init__(self, client: redis.Redis, limit: int, window_seconds: float = 3600.0) -> None:
        self._take = client.register_script(_TAKE)
        self.limit = limit
        self._window_ms = max(1, int(window_seconds * 1000))

    def take(self, team_id: int, logins: int, batch: bool = False) -> QuotaDecision:
        """Count `logins` for the team now, or refuse them all.

        Refused, the wait is until the log has room for them; with `batch` (a job's row), until
        a tenth of the quota has freed as well: a job resumed for one freed login would only
        be parked again at once, so a blocked job sleeps until a batch of its rows can go.
        """
        if logins <= 0:
            return QuotaDecision(True)
        answer = int(self._take(keys=[team_key(team_id)], args=[
            self.limit, self._window_ms, logins, uuid.uuid4().hex,
            max(1, self.limit // 10) if batch else 0]))
        if answer == 0:
            return QuotaDecision(True)
        return QuotaDecision(False, answer / 1000)


def team_key(team_id: int) -> str:
    return f"{KEY_PREFIX}:team:{team_id}"
