"""Throughput, side by side: the machine's own limit (tests/bench/baseline.py) against the same
accounts through mailconnect (POST, worker, database, report, status `completed`).

    python -m tests.bench.throughput --accounts 1000 --accounts 5000 --runs 3
        --database-url sqlite --database-url postgresql+psycopg://...  [--latency-ms 40]
        [--workers 2]

Both talk to one local Dovecot through a proxy that adds latency to every read, and each runs
in processes of its own (the baseline script; mailconnect's gunicorn and worker as the
Procfile starts them). The system runs the documented default worker setup (one `celery
worker`, WORKER_CONCURRENCY=100), except PROBE_MAX_PER_HOST, raised to the concurrency because
every account shares one host; `--workers N` runs N worker processes sharing those 100 threads
instead (the sizing guide's one process per core, for a CPU-bound machine). For each size,
each run times the baseline once, then the system on each database (`sqlite` is a fresh
SQLite file per run).

Prints every run; per size and database the medians, their ratio, and CPU milliseconds per
row (medians) from the POST to `completed`: the worker's process tree, gunicorn's process tree
(the POST and the status polls, one every 0.25 s) and the database server (PostgreSQL: the
backends serving this database, and the whole server, which other databases' users share;
SQLite runs in-process, inside the worker and web figures); the baseline's CPU per account,
and worker CPU per row against it. Checks every run's counters are exact. A JSON line last.
"""

from __future__ import annotations

import argparse
import statistics

from tests.bench.baseline import run_baseline_process
from tests.bench.environment import (
    behind_latency,
    bench_servers,
    machine_reference,
    print_result,
    service_env,
)
from tests.bench.system import database_label, database_url, run_job
from tests.factories import bulk_row

CONCURRENCY = 100  # WORKER_CONCURRENCY's default


def account_rows(users: dict[str, str], smtp_port: int, imap_port: int,
                 smtp_host: str = "localhost", imap_host: str = "localhost") -> list[dict]:
    return [bulk_row(user, smtpPassword=pw, imapPassword=pw, smtpHost=smtp_host,
                     smtpPort=smtp_port, smtpEncryption="starttls", imapHost=imap_host,
                     imapPort=imap_port, imapEncryption="ssl") for user, pw in users.items()]


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, action="append")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes, sharing the concurrency evenly")
    parser.add_argument("--database-url", action="append",
                        help="repeatable; `sqlite` (the default) is a fresh SQLite file")
    args = parser.parse_args()
    sizes = args.accounts or [1000, 5000]
    databases = args.database_url or ["sqlite"]
    reference = machine_reference()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(max(sizes))}
    print(f"{', '.join(map(str, sizes))} accounts, {CONCURRENCY} at once, "
          f"+{args.latency_ms:g} ms per read; system: {args.workers} worker(s) x "
          f"{CONCURRENCY // args.workers} threads, PROBE_MAX_PER_HOST={CONCURRENCY} (raised "
          "from 20: every account shares one host)", flush=True)
    worker_envs = [{"WORKER_CONCURRENCY": str(CONCURRENCY // args.workers)}] * args.workers
    results = []
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), \
            behind_latency(mail, args.latency_ms) as (smtp, imap):
        for size in sizes:
            some = dict(list(users.items())[:size])
            baselines, systems = [], {database_label(db): [] for db in databases}
            for run in range(1, args.runs + 1):
                baseline = run_baseline_process(list(some.items()), "localhost", smtp.port,
                                                imap.port, str(pki.ca_file), CONCURRENCY, tmp)
                baselines.append(baseline)
                for given in databases:
                    label = database_label(given)
                    name = f"{label}-{size}-{run}"
                    env = service_env(tmp, database_url(given, tmp, name), redis_url, s3, pki,
                                      PROBE_MAX_PER_HOST=str(CONCURRENCY))
                    job = run_job(tmp, name, env, account_rows(some, smtp.port, imap.port),
                                  worker_envs=worker_envs)
                    systems[label].append({"seconds": job.seconds, **job.cpu_ms_per_row()})
                    cpu = ", ".join(f"{k} {v:.2f}" for k, v in job.cpu_ms_per_row().items())
                    print(f"{size} accounts, run {run}, {label}: baseline {baseline.seconds:.2f}s "
                          f"({baseline.cpu_seconds * 1000 / size:.2f} ms CPU/account), system "
                          f"{job.seconds:.2f}s, ratio {job.seconds / baseline.seconds:.2f}; "
                          f"CPU ms/row: {cpu}; counters exact", flush=True)
            base_s = statistics.median(b.seconds for b in baselines)
            base_cpu = statistics.median(b.cpu_seconds for b in baselines) * 1000 / size
            for label, runs in systems.items():
                system_s = median_of(runs, "seconds")
                cpu = {key: round(median_of(runs, key), 3) for key in runs[0] if key != "seconds"}
                if label == "sqlite":
                    cpu["database"] = "in-process"
                result = {
                    "accounts": size, "database": label,
                    "baseline_s": [round(b.seconds, 2) for b in baselines],
                    "system_s": [round(r["seconds"], 2) for r in runs],
                    "median_baseline_s": round(base_s, 2), "median_system_s": round(system_s, 2),
                    "ratio": round(system_s / base_s, 3),
                    "cpu_ms_per_row": cpu, "baseline_cpu_ms_per_account": round(base_cpu, 3),
                    "worker_cpu_ratio": round(cpu["worker"] / base_cpu, 3),
                    "counters_exact": True,  # run_job raises otherwise
                }
                results.append(result)
                print(f"{size} accounts, {label}, medians of {args.runs}: baseline {base_s:.2f}s, "
                      f"system {system_s:.2f}s, ratio {system_s / base_s:.2f}; CPU ms per row: "
                      f"worker {cpu['worker']:.2f}, web {cpu['web']:.2f}, database "
                      + (f"{cpu['database']:.2f} (whole server {cpu['db_server']:.2f})"
                         if label == "postgresql" else "in-process")
                      + f"; baseline {base_cpu:.2f} ms CPU per account; worker CPU per row / "
                      f"baseline CPU per account {cpu['worker'] / base_cpu:.2f}", flush=True)
    print_result({"concurrency": CONCURRENCY, "workers": args.workers,
                  "latency_ms": args.latency_ms, "runs": args.runs,
                  "results": results}, reference)


if __name__ == "__main__":
    main()
