"""A server process on a loopback port, for as long as a test or benchmark needs it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from app.devserver import wait_for_port


@contextmanager
def serving(args: list[str], port: int, name: str) -> Iterator[None]:
    """Start `args` (which must listen on 127.0.0.1:port), wait for the port, stop it after."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, name)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)
