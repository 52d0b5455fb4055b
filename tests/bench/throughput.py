"""Throughput, side by side: the machine's own limit (tests/bench/baseline.py) against the same
accounts through mailconnect (POST, worker, database, report, status `completed`).

    python -m tests.bench.throughput --accounts 5000 --runs 3 [--latency-ms 40]

Both talk to one local Dovecot through a proxy that adds latency to every read, and each runs
in processes of its own (the baseline script; mailconnect's worker). The system
runs the documented default worker setup (one `celery worker`, WORKER_CONCURRENCY=100), except
PROBE_MAX_PER_HOST, raised to the concurrency because every account shares one host.
Prints every run, the medians and their ratio; a JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

from tests.bench.baseline import run_baseline_process
from tests.bench.environment import bench_servers, service_env
from tests.factories import bulk_row
from tests.servers.counting_proxy import counting_proxy
from tests.servers.worker import celery_process
from tests.workers.conftest import Api

CONCURRENCY = 100  # WORKER_CONCURRENCY's default


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(args.accounts)}
    print(f"{args.accounts} accounts, {CONCURRENCY} at once, +{args.latency_ms:g} ms per read; "
          f"system: default worker setup with PROBE_MAX_PER_HOST={CONCURRENCY} "
          "(raised from 20: every account shares one host)")
    baseline_times, system_times = [], []
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), ExitStack() as stack:
        delay = args.latency_ms / 1000
        smtp = stack.enter_context(counting_proxy(mail.submission_port, delay_seconds=delay))
        imap = stack.enter_context(counting_proxy(mail.imaps_port, delay_seconds=delay))
        for run in range(1, args.runs + 1):
            baseline = run_baseline_process(list(users.items()), "localhost", smtp.port,
                                            imap.port, str(pki.ca_file), CONCURRENCY, tmp)
            baseline_times.append(baseline)
            system = run_system(tmp, run, args, users, pki, smtp.port, imap.port, redis_url, s3)
            system_times.append(system)
            print(f"run {run}: baseline {baseline:.2f}s, system {system:.2f}s, "
                  f"ratio {system / baseline:.2f}")
    base, sys_ = statistics.median(baseline_times), statistics.median(system_times)
    print(f"median: baseline {base:.2f}s, system {sys_:.2f}s, ratio {sys_ / base:.2f}, "
          f"efficiency {base / sys_:.2f}")
    print(json.dumps({"accounts": args.accounts, "concurrency": CONCURRENCY,
                      "latency_ms": args.latency_ms,
                      "baseline_s": [round(t, 2) for t in baseline_times],
                      "system_s": [round(t, 2) for t in system_times],
                      "median_baseline_s": round(base, 2), "median_system_s": round(sys_, 2),
                      "ratio": round(sys_ / base, 3), "efficiency": round(base / sys_, 3)}))


def run_system(tmp: Path, run: int, args, users, pki, smtp_port: int, imap_port: int,
               redis_url: str, s3: str) -> float:
    db_url = args.database_url or f"sqlite:///{tmp}/system-{run}.db"
    env = service_env(tmp, db_url, redis_url, s3, pki, PROBE_MAX_PER_HOST=str(CONCURRENCY))
    api = Api(env)
    rows = [bulk_row(user, smtpPassword=pw, imapPassword=pw, smtpHost="localhost",
                     smtpPort=smtp_port, smtpEncryption="starttls", imapHost="localhost",
                     imapPort=imap_port, imapEncryption="ssl") for user, pw in users.items()]
    with celery_process("worker", env, tmp, name=f"system-{run}") as worker:
        time.sleep(3)  # the worker connects before the clock starts
        started = time.perf_counter()
        request_id = api.submit(rows)
        status = api.wait(request_id, timeout=3600, diagnostics=worker.tail)
        elapsed = time.perf_counter() - started
    assert status["succeeded"] == args.accounts, status
    return elapsed


if __name__ == "__main__":
    main()
