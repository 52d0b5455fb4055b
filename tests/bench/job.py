"""Time from POST to `completed` for N accounts tested against a local Dovecot.

    python -m tests.bench.job --accounts 500 [--database-url postgresql://...] [--runs 1]

Everything real: Dovecot (IMAPS + submission with STARTTLS), a private Redis, moto's S3
server, one Celery worker as the Procfile starts it (default WORKER_CONCURRENCY), SQLite or the
given database. The per-host cap is not in play: this measures the pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tests.bench.environment import bench_servers, machine_reference, print_result, service_env
from tests.factories import bulk_row
from tests.servers.worker import celery_process
from tests.workers.conftest import Api


def accounts(count: int, port_smtp: int, port_imap: int) -> list[dict]:
    return [bulk_row(f"user{i}@example.test", smtpPassword=f"pw-{i}", imapPassword=f"pw-{i}",
                     smtpHost="localhost", smtpPort=port_smtp, smtpEncryption="starttls",
                     imapHost="localhost", imapPort=port_imap, imapEncryption="ssl")
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    reference = machine_reference()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(args.accounts)}
    times = []
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3):
        for run in range(args.runs):
            db_url = args.database_url or f"sqlite:///{tmp}/bench-{run}.db"
            env = service_env(tmp, db_url, redis_url, s3, pki)
            api = Api(env)
            rows = accounts(args.accounts, mail.submission_port, mail.imaps_port)
            with celery_process("worker", env, tmp, name=f"bench-{run}") as worker:
                time.sleep(3)  # let the worker connect before the clock starts
                started = time.perf_counter()
                request_id = api.submit(rows)
                status = api.wait(request_id, timeout=1800, diagnostics=worker.tail)
                elapsed = time.perf_counter() - started
            assert status["succeeded"] == args.accounts, status
            times.append(elapsed)
            print(f"run {run + 1}: {args.accounts} accounts completed in {elapsed:.2f}s "
                  f"({args.accounts / elapsed:.1f} accounts/s)")
    median = statistics.median(times)
    print(f"median: {median:.2f}s")
    print_result({"accounts": args.accounts, "median_s": round(median, 2),
                      "runs_s": [round(t, 2) for t in times],
                      "database": (args.database_url or "sqlite").split(":")[0]}, reference)


if __name__ == "__main__":
    main()
