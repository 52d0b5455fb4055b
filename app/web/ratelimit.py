"""Rate limits per API key, counted in Redis so that every web process shares one count.

Each /v1 route declares its category with `@rate_limited(...)`; `install_rate_limits` wraps
those views in a Flask-Limiter shared limit per category (RATE_LIMIT_BULK, _SINGLE, _POLL,
_MANAGE), keyed by the caller's team and API key. The wrapper runs when the view is called,
after the blueprint's `require_team`: a request without a valid key is answered 401 and
counts against no one's limit, so nobody can use up another client's requests.

Fixed windows (limits' `fixed-window`): one INCR per request, constant memory per key, and an
exact reset time for `Retry-After`. A window starts at a key's first request in it, so at most
N requests pass per window; across a window boundary a burst of up to 2N can pass, while the
sustained rate stays N per window.

When Redis cannot be reached, each web process counts in its own memory instead (one warning
when it switches) and checks Redis again with a growing backoff: limits keep applying, at
worst once per web process, and no request fails because of the limiter. Failing closed would
turn a Redis outage into a full API outage, although polls and account reads need no Redis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from flask import Flask, current_app, g, jsonify
from flask.wrappers import Response
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from limits.errors import StorageError

from app.config import Settings
from app.web.auth import presented_key

log = logging.getLogger(__name__)

EXTENSION = "mailconnect.limiter"
# Redis must not stall requests: past these a request is limited in memory instead.
REDIS_TIMEOUT_SECONDS = 1.0

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


def install_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Limit every marked view of `app` (call after its blueprints are registered)."""
    if not settings.rate_limits_enabled:
        return None
    limiter = Limiter(
        key_func=_caller,
        storage_uri=settings.redis_url,
        storage_options={"socket_timeout": REDIS_TIMEOUT_SECONDS,
                         "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                         "wrap_exceptions": True},
        strategy="fixed-window",
        key_prefix="mailconnect",
        # Flask-Limiter's own headers put Retry-After on every answer and an epoch time in
        # Reset; ours follow the IETF RateLimit fields (seconds) and appear with 429 only.
        headers_enabled=False,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.init_app(app)
    for endpoint, view in list(app.view_functions.items()):
        category = category_of(view)
        if category is not None:
            limit = limiter.shared_limit(settings.rate_limits[category.value],
                                         scope=category.value)
            app.view_functions[endpoint] = limit(view)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many)
    app.after_request(_add_headers)
    return limiter


def _caller() -> str:
    # Set by require_team before any limited view runs. A prefix of the key's SHA-256 tells
    # keys apart without putting the key, or the hash the database looks keys up by, in Redis.
    digest = hashlib.sha256(presented_key().encode()).hexdigest()[:16]
    return f"team{g.team_id}:key{digest}"


def _current() -> RequestLimit | None:
    limiter: Limiter | None = current_app.extensions.get(EXTENSION)
    return limiter.current_limit if limiter is not None else None


def _headers(limit: RequestLimit | None) -> dict[str, str]:
    """The RateLimit fields for the limit this request was counted against; none when Redis
    went away after the count (the answer is still given, without them)."""
    if limit is None:
        return {}
    try:
        reset_at, remaining = limit.window
    except StorageError as exc:
        log.warning("rate-limit headers left out: %s", exc)
        return {}
    # Whole seconds, rounded up: a client that waits this long finds the window renewed.
    reset_in = max(1, math.ceil(reset_at - time.time()))
    return {HEADER_LIMIT: str(limit.limit.amount), HEADER_REMAINING: str(remaining),
            HEADER_RESET: str(reset_in)}


def _add_headers(response: Response) -> Response:
    if HEADER_LIMIT not in response.headers:  # a 429 has them already
        response.headers.update(_headers(_current()))
    return response


def _too_many(exc: RateLimitExceeded) -> Response:
    category = Category(exc.limit.scope)
    headers = _headers(_current())
    retry_after = int(headers.get(HEADER_RESET, exc.limit.limit.get_expiry()))
    response = jsonify({
        "message": f"x-api-key: more than {exc.limit.limit} {DESCRIPTION[category]} for this "
                   f"API key; retry in {retry_after} s",
        "errorCode": "rate_limited",
        "category": category.value,
        "limit": str(exc.limit.limit),
        "retryAfter": retry_after,
    })
    response.status_code = 429
    response.headers.update(headers)
    response.headers["Retry-After"] = str(retry_after)
    return response
