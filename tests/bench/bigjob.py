"""Big jobs end to end: time per row and the worker's peak RSS for a job of each size, through
the Procfile's gunicorn and one worker (default setup), Dovecot behind the latency proxy.

    python -m tests.bench.bigjob --rows 5000 --rows 50000 [--latency-ms 40]
        [--database-url URL]

Unlike memory.py (every probe refused at once), every row here is a real login over SMTP
(STARTTLS) and IMAP (TLS), so the figures include what grows with the job while it runs at
full speed. PROBE_MAX_PER_HOST is raised to the concurrency (every account shares one host)
and MAX_ACCOUNTS_PER_REQUEST to the largest size, so that each job is one request. Each size
gets a fresh worker and database (`sqlite`, the default, is a fresh SQLite file). Prints each
size's time per row and peak RSS, and the largest size's against the smallest's; checks that
every counter is exact. A JSON line last.
"""

from __future__ import annotations

import argparse

from tests.bench.environment import (
    behind_latency,
    bench_servers,
    machine_reference,
    print_result,
    service_env,
)
from tests.bench.memory import MB
from tests.bench.system import database_label, database_url, run_job
from tests.bench.throughput import CONCURRENCY, account_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--database-url", default="sqlite")
    args = parser.parse_args()
    sizes = args.rows or [5000, 50000]
    reference = machine_reference()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(max(sizes))}
    label = database_label(args.database_url)
    print(f"jobs of {', '.join(map(str, sizes))} rows, +{args.latency_ms:g} ms per read, "
          f"{label}", flush=True)
    per_size: dict[int, dict] = {}
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), \
            behind_latency(mail, args.latency_ms) as (smtp, imap):
        for size in sizes:
            name = f"bigjob-{size}"
            env = service_env(tmp, database_url(args.database_url, tmp, name), redis_url, s3,
                              pki, PROBE_MAX_PER_HOST=str(CONCURRENCY),
                              MAX_ACCOUNTS_PER_REQUEST=str(max(sizes)),
                              MAX_REQUEST_BYTES=str(512 * MB))
            some = dict(list(users.items())[:size])
            job = run_job(tmp, name, env, account_rows(some, smtp.port, imap.port))
            per_size[size] = {"seconds": round(job.seconds, 2),
                              "ms_per_row": round(job.seconds * 1000 / size, 3),
                              "worker_peak_rss_mb": round(job.worker_peak_rss / MB, 1),
                              "cpu_ms_per_row": job.cpu_ms_per_row(), "counters": job.counts}
            print(f"{size} rows: {job.seconds:.1f}s, {job.seconds * 1000 / size:.2f} ms per row, "
                  f"worker peak RSS {job.worker_peak_rss / MB:.1f} MB; counters exact",
                  flush=True)
    small, large = per_size[min(sizes)], per_size[max(sizes)]
    time_ratio = large["ms_per_row"] / small["ms_per_row"]
    rss_ratio = large["worker_peak_rss_mb"] / small["worker_peak_rss_mb"]
    print(f"{max(sizes)} rows against {min(sizes)}: time per row {time_ratio:.3f}x, "
          f"worker peak RSS {rss_ratio:.3f}x")
    print_result({"latency_ms": args.latency_ms, "database": label,
                  "sizes": {str(size): figures for size, figures in per_size.items()},
                  "time_per_row_ratio": round(time_ratio, 3), "rss_ratio": round(rss_ratio, 3),
                  "counters_exact": True},  # run_job raises otherwise
                 reference)


if __name__ == "__main__":
    main()
