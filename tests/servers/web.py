"""The web process, started exactly as the Procfile's `web` line starts it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.devserver import free_port, wait_for_port
from tests.bench.environment import procfile_web
from tests.servers.worker import Process


@contextmanager
def web(env: dict[str, str], tmp_path: Path, workers: int = 1
        ) -> Iterator[tuple[str, Process]]:
    """gunicorn exactly as the Procfile's `web` line starts it."""
    port = free_port()
    process = Process("web", ["bash", "-c", f"exec {procfile_web()}"],
                      {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers),
                       "WEB_THREADS": "4"},
                      tmp_path / "web.log")
    try:
        wait_for_port(port, process.popen, "gunicorn")
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop()
