"""Rate limits per API key, counted in Redis so that every web process shares one count.

Each /v1 route declares its category with `@rate_limited(...)`; `install_rate_limits` wraps
those views so that each call is counted against its category's limits (RATE_LIMIT_BULK,
_SINGLE, _POLL, _MANAGE), keyed by the caller's team and API key. The wrapper runs when the
view is called, after the blueprint's `require_team`: a request without a valid key is answered
401 and counts against no one's limit, so nobody can use up another client's requests.

The counting is the `limits` library's: its limit strings, its storage (one Lua INCR with the
window's expiry per limit per request) and its memory storage as the fallback. What it does not
give is the count and the window's end from that one round trip, and the RateLimit headers go
on every answer, so the windows are fixed and aligned to the clock (a key's window number is
`now // period`): the count comes back from the INCR and the reset is arithmetic. Flask-Limiter
needed three round trips and about as much Python again per request, which halved the status
polls a web process can answer. Across a window boundary a burst of up to 2N can pass; the
sustained rate stays N per window.

When Redis cannot be reached, each web process counts in its own memory for a while (one
warning when it switches) and then tries Redis again: limits keep applying, at worst once per
web process, and no request fails because of the limiter. Failing closed would turn a Redis
outage into a full API outage, although polls and account reads need no Redis.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from flask import Flask, current_app, g
from flask.wrappers import Response
from limits import RateLimitItem
from limits.storage import MemoryStorage, RedisStorage

from app.config import Settings, parse_rate_limit
from app.web.auth import presented_key
from app.web.errors import error_response

log = logging.getLogger(__name__)

EXTENSION = "mailconnect.limiter"
# Redis must not stall requests: past these a request is counted in memory instead.
REDIS_TIMEOUT_SECONDS = 1.0
# How long a process counts in memory after Redis failed, before it tries Redis again.
REDIS_RETRY_SECONDS = 10.0
KEY_PREFIX = "mailconnect"

HEADER_LIMIT = "RateLimit-Limit"
HEADER_REMAINING = "RateLimit-Remaining"
HEADER_RESET = "RateLimit-Reset"


class Category(StrEnum):
    BULK = "bulk"  # submissions and job controls: connect, reconnect, retry, cancel
    SINGLE = "single"  # a login test now: single connect, dry run, /test, PATCH
    POLL = "poll"  # reads: job status, jobs list, account list and get
    MANAGE = "manage"  # changes that test nothing: delete


DESCRIPTION = {
    Category.BULK: "bulk submissions",
    Category.SINGLE: "single-account tests",
    Category.POLL: "polls",
    Category.MANAGE: "management calls",
}

_ATTRIBUTE = "rate_limit_category"
View = TypeVar("View", bound=Callable)


def rate_limited(category: Category) -> Callable[[View], View]:
    """Mark a view with its category (put it under the route decorator)."""
    def mark(view: View) -> View:
        setattr(view, _ATTRIBUTE, category)
        return view
    return mark


def category_of(view: Callable) -> Category | None:
    return getattr(view, _ATTRIBUTE, None)


@dataclass(frozen=True)
class Count:
    """Where a caller stands against one limit after this request was counted."""

    limit: RateLimitItem
    remaining: int
    reset_in: int  # whole seconds until the window renews, at least 1

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0

    def headers(self) -> dict[str, str]:
        return {HEADER_LIMIT: str(self.limit.amount),
                HEADER_REMAINING: str(max(0, self.remaining)),
                HEADER_RESET: str(self.reset_in)}


class RateLimiter:
    """Counts each call against its category's limits, in Redis, or in memory while Redis is
    unreachable."""

    def __init__(self, redis_url: str, limits: dict[Category, list[RateLimitItem]],
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._monotonic = monotonic
        self._redis = RedisStorage(redis_url, key_prefix=KEY_PREFIX, wrap_exceptions=True,
                                   socket_timeout=REDIS_TIMEOUT_SECONDS,
                                   socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
        self._memory = MemoryStorage()
        self._redis_back_at = 0.0
        self._lock = threading.Lock()

    def count(self, category: Category, caller: str) -> Count:
        """Count one call; the limit it broke, or else the one with the fewest calls left."""
        now = self._clock()
        counts = []
        for item in self._limits[category]:
            period = item.get_expiry()
            window = int(now // period)
            used = self._incr(item.key_for(category.value, caller, str(window)), period)
            counts.append(Count(item, item.amount - used,
                                max(1, math.ceil((window + 1) * period - now))))
        exceeded = [c for c in counts if c.exceeded]
        if exceeded:
            return max(exceeded, key=lambda c: c.reset_in)
        return min(counts, key=lambda c: c.remaining)

    def _incr(self, key: str, expiry: int) -> int:
        if self._monotonic() >= self._redis_back_at:
            try:
                return self._redis.incr(key, expiry)
            except Exception as exc:  # noqa: BLE001 (any Redis failure: count in memory)
                with self._lock:
                    self._redis_back_at = self._monotonic() + REDIS_RETRY_SECONDS
                log.warning("rate limits: Redis unreachable (%s); counting in this process's "
                            "memory, falling back to in-memory storage for %g s",
                            type(exc).__name__, REDIS_RETRY_SECONDS)
        return self._memory.incr(key, expiry)


def install_rate_limits(app: Flask, settings: Settings) -> RateLimiter | None:
    """Limit every marked view of `app` (call after its blueprints are registered)."""
    if not settings.rate_limits_enabled:
        return None
    limiter = RateLimiter(settings.redis_url, {
        category: parse_rate_limit(settings.rate_limits[category.value])
        for category in Category})
    for endpoint, view in list(app.view_functions.items()):
        category = category_of(view)
        if category is not None:
            app.view_functions[endpoint] = _counted(view, category)
    app.extensions[EXTENSION] = limiter
    app.after_request(_add_headers)
    return limiter


def _counted(view: Callable, category: Category) -> Callable:
    @functools.wraps(view)
    def counted(*args: Any, **kwargs: Any) -> Any:
        # g.team_id and g.api_key: set by authenticate() before any limited view runs,
        # wherever the request carried the key (header, query string, HTTP Basic).
        count = count_call(category, g.team_id, g.get("api_key") or presented_key())
        if count is not None and count.exceeded:
            return _too_many(category, count)
        return view(*args, **kwargs)
    return counted


def count_call(category: Category, team_id: int, key: str) -> Count | None:
    """Count one call of a team's key; None when rate limits are off. For views that find
    the key elsewhere than in the headers (the status page's cookie): they answer an exceeded
    count in their own way. The count's headers go on the answer, whatever it is."""
    limiter: RateLimiter | None = current_app.extensions.get(EXTENSION)
    if limiter is None:
        return None
    count = limiter.count(category, _caller(team_id, key))
    if not count.exceeded:
        g.rate_limit_count = count  # for the answer's headers, whatever the view answers
    return count


def _add_headers(response: Response) -> Response:
    count: Count | None = g.get("rate_limit_count")
    if count is not None:
        response.headers.update(count.headers())
    return response


def _caller(team_id: int, key: str) -> str:
    # A prefix of the key's SHA-256 tells keys apart without putting the key, or the hash the
    # database looks keys up by, in Redis.
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"team{team_id}:key{digest}"


def _too_many(category: Category, count: Count) -> Response:
    response = error_response(
        429, f"x-api-key: more than {count.limit} {DESCRIPTION[category]} for this API key; "
             f"retry in {count.reset_in} s",
        retry_after=count.reset_in, errorCode="rate_limited", category=category.value,
        limit=str(count.limit), retryAfter=count.reset_in)
    response.headers.update(count.headers())
    return response
