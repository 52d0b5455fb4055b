"""What every system benchmark starts from: the local servers, the environment its
mailconnect processes run with, and the machine reference it prints beside its figures."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

from app.config import load_settings
from app.credentials import CredentialCipher
from app.migrate import upgrade
from tests.servers.counting_proxy import SessionCounter, counting_proxy
from tests.servers.dovecot import DovecotServer, start_dovecot
from tests.servers.redis_server import private_redis
from tests.servers.s3 import moto_s3
from tests.servers.tls import TestPKI, make_pki
from tests.servers.web import procfile_gunicorn
from tests.servers.worker import Process

REFERENCE_ITERATIONS = 10_000_000


def _reference_loop() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(REFERENCE_ITERATIONS):
        total += i
    return time.perf_counter() - started


def machine_reference() -> float:
    """Seconds a fixed pure-Python workload (a 10M-iteration loop) takes on this machine, best
    of 3: machines differ in speed by up to 3x, so figures from two machines are read against
    their references. BENCH_REFERENCE_RUNS lowers the runs (the CI smoke tests use 1)."""
    runs = int(os.environ.get("BENCH_REFERENCE_RUNS", "3"))
    best = min(_reference_loop() for _ in range(runs))
    print(f"machine reference: {REFERENCE_ITERATIONS:,}-iteration Python loop in {best:.3f} s "
          f"(best of {runs})", flush=True)
    return round(best, 3)


def print_result(result: Mapping[str, object], reference: float) -> None:
    """The benchmark's last line: its JSON result, with the machine reference it ran beside."""
    print(f"machine reference: {reference:.3f} s")
    print(json.dumps({**result, "machine_reference_s": reference}), flush=True)


def service_env(tmp: Path, db_url: str, redis_url: str, s3: str, pki: TestPKI,
                **extra: str) -> dict[str, str]:
    upgrade(load_settings(DATABASE_URL=db_url).sqlalchemy_url)
    return {
        "MAILCONNECT_DATA_DIR": str(tmp / "data"), "DATABASE_URL": db_url,
        "REDIS_URL": redis_url, "S3_ENDPOINT_URL": s3, "S3_BUCKET": "bench",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
        "PROBE_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
        "PROBE_ALLOWED_PORTS": "1-65535",  # the local servers listen on random high ports
        "PROBE_EXTRA_CA_FILE": str(pki.ca_file),
        # Benchmarks measure capacity: the limits stay on (every request pays for them) but
        # far above what a benchmark sends from its one key and team.
        "TEAM_MAX_LOGINS_PER_HOUR": "10000000",
        **{f"RATE_LIMIT_{category}": "10000000/minute"
           for category in ("BULK", "SINGLE", "POLL", "MANAGE")},
        **extra,
    }


@contextmanager
def web_process(env: Mapping[str, str], tmp: Path, name: str = "web"
                ) -> Iterator[tuple[str, Process]]:
    """gunicorn as the Procfile's `web` line starts it, with its defaults (workers, threads),
    once every worker serves (so no benchmark's clock counts its start-up); yields its base
    URL and process."""
    with procfile_gunicorn(name, env, tmp / f"{name}.log") as served:
        yield served


class BenchServers(NamedTuple):
    tmp: Path
    pki: TestPKI
    mail: DovecotServer
    redis_url: str
    s3: str


@contextmanager
def bench_servers(users: Mapping[str, str]) -> Iterator[BenchServers]:
    """A scratch directory, test CA, Dovecot with these users, a private Redis and moto S3."""
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        pki = make_pki(tmp / "pki")
        yield BenchServers(
            tmp, pki,
            stack.enter_context(start_dovecot(tmp / "dovecot", pki, users)),
            stack.enter_context(private_redis(tmp)),
            stack.enter_context(moto_s3()),
        )


@contextmanager
def behind_latency(mail: DovecotServer, latency_ms: float
                   ) -> Iterator[tuple[SessionCounter, SessionCounter]]:
    """Dovecot's submission and IMAPS ports behind proxies that add `latency_ms` to every read,
    so that loopback costs what a real provider's round trip costs: (smtp, imap)."""
    delay = latency_ms / 1000
    with counting_proxy(mail.submission_port, delay_seconds=delay) as smtp, \
            counting_proxy(mail.imaps_port, delay_seconds=delay) as imap:
        yield smtp, imap
