"""Worker memory against job size: the peak RSS of the worker (the Procfile's `worker` line,
default setup) while it runs a job of N rows, for each N, each with a fresh worker.

    python -m tests.bench.memory --rows 5000 --rows 50000

Every row points at a loopback port with nothing listening, so each probe ends at once with
`connection_refused` (a final verdict, not retried) and the run measures what grows with the
job (fan-out, claims, results, the report), not mail servers. MAX_ACCOUNTS_PER_REQUEST is
raised to the largest N so that each job is one request. JSON line last.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

from app.devserver import free_port
from tests.bench.environment import machine_reference, print_result, service_env
from tests.factories import bulk_row
from tests.servers.redis_server import private_redis
from tests.servers.s3 import moto_s3
from tests.servers.tls import make_pki
from tests.servers.worker import celery_process
from tests.workers.conftest import Api

MB = 1024 * 1024


@contextmanager
def peak_rss(pid: int, interval: float = 0.05, largest_process: bool = False
             ) -> Iterator[Callable[[], int]]:
    """Samples the RSS of a process and its children until the block ends; yields the peak of
    their sum, or with largest_process, of the largest one of them."""
    peak = 0
    combine = max if largest_process else sum
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(pid)
        while not stop.is_set():
            try:
                rss = combine(p.memory_info().rss
                              for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                rss = 0
            peak = max(peak, rss)
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak
    finally:
        stop.set()
        sampler.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    args = parser.parse_args()
    reference = machine_reference()
    sizes = args.rows or [5000, 50000]
    peaks: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        pki = make_pki(tmp / "pki")
        redis_url = stack.enter_context(private_redis(tmp))
        s3 = stack.enter_context(moto_s3())
        closed_port = free_port()
        for size in sizes:
            env = service_env(tmp, f"sqlite:///{tmp}/memory-{size}.db", redis_url, s3, pki,
                              MAX_ACCOUNTS_PER_REQUEST=str(max(sizes)))
            api = Api(env)
            rows = [bulk_row(f"user{i}@example.test", smtpHost="127.0.0.1",
                             smtpPort=closed_port, imapHost="127.0.0.1", imapPort=closed_port)
                    for i in range(size)]
            with celery_process("worker", env, tmp, name=f"memory-{size}") as worker:
                time.sleep(3)
                with peak_rss(worker.popen.pid) as peak:
                    started = time.perf_counter()
                    status = api.wait(api.submit(rows), timeout=3600, diagnostics=worker.tail)
                    elapsed = time.perf_counter() - started
                assert status["processed"] == size and status["reportURL"], status
                peaks[size] = peak()
            print(f"{size} rows: worker peak RSS {peaks[size] / MB:.1f} MB, job {elapsed:.1f}s",
                  flush=True)
    smallest, largest = min(sizes), max(sizes)
    ratio = peaks[largest] / peaks[smallest]
    print(f"peak RSS {largest} rows / {smallest} rows: {ratio:.2f}")
    print_result({"worker_peak_rss_mb": {str(n): round(p / MB, 1) for n, p in peaks.items()},
                      "ratio": round(ratio, 3)}, reference)


if __name__ == "__main__":
    main()
