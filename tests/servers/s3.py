"""A local S3-compatible server (moto's server mode), reached over HTTP through boto3."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

from app.devserver import free_port
from tests.servers.loopback import serving


@contextmanager
def moto_s3() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def moto_s3_process() -> Iterator[str]:
    """moto in a process of its own: it keeps every object in memory, which must not count
    as the measuring process's own."""
    port = free_port()
    with serving([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                 port, "moto"):
        yield f"http://127.0.0.1:{port}"
