"""Real Celery worker and beat processes, started exactly as the Procfile starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Process:
    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._output = log.open("ab")
        self.popen = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                                      stdout=self._output, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acks, like a lost machine."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._output.close()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def celery_process(kind: str, env: Mapping[str, str], workdir: Path, name: str | None = None,
                   extra: list[str] | None = None) -> Iterator[Process]:
    name = name or kind
    args = [sys.executable, "-m", "celery", "-A", "workers.celery_app", kind,
            "--loglevel", "INFO", *(extra or [])]
    if kind == "worker":
        args = ["nice", "-n", "10", *args,
                "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]
    process = Process(name, args, env, workdir / f"{name}.log")
    try:
        yield process
    finally:
        process.stop()


def wait_ready(worker: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in worker.log.read_text(errors="replace"):
        assert worker.popen.poll() is None, worker.tail()
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.1)
