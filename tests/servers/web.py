"""The web process, started exactly as the Procfile's `web` line starts it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil

from app.devserver import free_port, wait_for_port
from tests.servers.worker import ROOT, Process


def procfile_web() -> str:
    """The command the Procfile's `web` line runs (gunicorn, as deployed)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.partition(":")[2].strip()
    raise RuntimeError("no web line in the Procfile")


# What app.web.server logs once a gunicorn worker has loaded the app.
WEB_WORKER_SERVING = b"loaded the app and is serving"


@contextmanager
def procfile_gunicorn(name: str, env: Mapping[str, str], log: Path
                      ) -> Iterator[tuple[str, Process]]:
    """gunicorn started by the Procfile's `web` line on a free port, once each of its workers
    has loaded the app: the port opens seconds before that. Yields its base URL and process."""
    port = free_port()
    logged_before = log.stat().st_size if log.exists() else 0
    process = Process(name, ["bash", "-c", f"exec {procfile_web()}"], {**env, "PORT": str(port)},
                      log)
    try:
        wait_for_port(port, process.popen, "gunicorn")
        _wait_for_workers(process, logged_before)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop()


def _wait_for_workers(web: Process, logged_before: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert web.popen.poll() is None, web.tail()
        workers = len(psutil.Process(web.popen.pid).children())
        with web.log.open("rb") as lines:
            lines.seek(logged_before)
            serving = lines.read().count(WEB_WORKER_SERVING)
        if workers and serving >= workers:
            return
        time.sleep(0.1)
    raise TimeoutError(f"gunicorn's workers did not start in {timeout} s:\n{web.tail()}")


@contextmanager
def web(env: dict[str, str], tmp_path: Path, workers: int = 1
        ) -> Iterator[tuple[str, Process]]:
    """gunicorn exactly as the Procfile's `web` line starts it."""
    with procfile_gunicorn("web", {**env, "WEB_CONCURRENCY": str(workers), "WEB_THREADS": "4"},
                           tmp_path / "web.log") as served:
        yield served
