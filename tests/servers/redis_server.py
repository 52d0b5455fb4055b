"""A real Redis for tests: TEST_REDIS_URL when set, else a private redis-server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.devserver import free_port, redis_server_binary
from tests.servers.loopback import serving


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    port = free_port()
    with serving([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(workdir)], port, "redis-server"):
        yield f"redis://127.0.0.1:{port}/0"
