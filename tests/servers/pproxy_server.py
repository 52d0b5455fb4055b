"""A real proxy on loopback: pproxy (PyPI) in a subprocess, as SOCKS5 or HTTP CONNECT.

`-v` makes pproxy log one line per tunnel it opens (`socks5 127.0.0.1:41152 -> localhost:993`)
and one per refused login (`Unauthorized SOCKS ...`), which the tests read to see what went
through it. `--auth 0`: pproxy otherwise trusts an address for 30 days after one good login,
and a wrong password from the same loopback address would then pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.servers.dovecot import free_ports, wait_for_ports

LOOPBACK = "127.0.0.1"
_TUNNEL = re.compile(r"^(\w+) \S+ -> (\S+)$")


@dataclass
class ProxyServer:
    scheme: str  # socks5 or http
    port: int
    log_file: Path
    username: str | None = None
    password: str | None = None

    def url(self, scheme: str | None = None, password: str | None = None) -> str:
        """The proxy's URL; `password` overrides the right one (to send a wrong one)."""
        credentials = ""
        if self.username:
            credentials = f"{quote(self.username)}:{quote(password or self.password or '')}@"
        return f"{scheme or self.scheme}://{credentials}{LOOPBACK}:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def tunnels(self) -> list[str]:
        """The destinations (host:port as the client sent them) of the tunnels opened so far."""
        return [m.group(2) for line in self.log().splitlines() if (m := _TUNNEL.match(line))]


# pproxy switches to uvloop whenever it can import it (mailconnect depends on it), then asks
# for the main thread's loop the way only asyncio's own policy allows.
_PPROXY_WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'pproxy'; "
    "from pproxy.server import main; main()"
)


@contextmanager
def start_proxy(workdir: Path, scheme: str, username: str | None = None,
                password: str | None = None) -> Iterator[ProxyServer]:
    port = free_ports(1)[0]
    auth = f"#{username}:{password}" if username else ""
    log_file = workdir / f"pproxy-{scheme}-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-u", "-c", _PPROXY_WITHOUT_UVLOOP, "-l",
             f"{scheme}://{LOOPBACK}:{port}{auth}", "--auth", "0", "-v"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        if not wait_for_ports(LOOPBACK, [port], time.monotonic() + 15,
                              alive=lambda: process.poll() is None):
            raise RuntimeError(f"pproxy did not start: {log_file.read_text()}")
        yield ProxyServer(scheme, port, log_file, username, password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
