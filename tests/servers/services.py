"""Where the external test services are, from the environment; None when not configured.

`.ci/run` starts PostgreSQL and Redis and exports both variables; on a developer machine
they are usually unset and tests fall back to SQLite and a private redis-server.
"""

from __future__ import annotations

import os

DATABASE_URL_ENV = "TEST_DATABASE_URL"  # e.g. postgresql+psycopg://u@127.0.0.1:55432/db
REDIS_URL_ENV = "TEST_REDIS_URL"  # e.g. redis://127.0.0.1:56379/0


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def database_url() -> str | None:
    return _env(DATABASE_URL_ENV)


def redis_url() -> str | None:
    return _env(REDIS_URL_ENV)
