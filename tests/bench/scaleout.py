"""Scale-out: the same job with 1, 2 and 4 worker processes at the same total concurrency
(100, 2 x 50, 4 x 25), with the per-host cap in play.

    python -m tests.bench.scaleout --accounts 5000 [--workers 1 --workers 2 --workers 4]
        [--concurrency 100] [--cap 80] [--latency-ms 40] [--database-url URL]

Dovecot behind the latency proxy; every account's SMTP goes to `localhost` and its IMAP to
`127.0.0.1`, so each protocol has one host, capped by PROBE_MAX_PER_HOST (--cap, below the
total concurrency: a cap counted per process instead of globally would let 2 x 50 or 4 x 25
sessions through). gunicorn and the workers run as the Procfile starts them, a fresh database
per configuration (`sqlite`, the default, is a fresh SQLite file; a PostgreSQL URL is shared).
For each configuration it prints the time from the POST to `completed` and checks, from the
mail server's side, that the cap held (peak concurrent sessions per host, counted by a proxy
in front of the latency while the client holds each session, as busyhost.py does; that proxy
runs in a process of its own, counting in the kernel's order of accepts and closes, so a peak
above the cap is one the workers really held, and it prints how long it lasted) and that
each mailbox was logged into once per protocol (sessions = rows); and from the job's side that
every counter is exact (job counters = rows in the database = report rows, each row tested
once: attempts = rows, claims >= rows). A JSON line last.
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
from tests.bench.system import database_label, database_url, run_job
from tests.bench.throughput import account_rows
from tests.servers.counting_proxy import counting_proxy_process


def lasted_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def exceeded(result: dict) -> str:
    """How long each protocol's peak first lasted: a race of a close and a connect lasts
    microseconds, a slot given out twice lasts a probe."""
    return ("EXCEEDED, the peak first lasting SMTP "
            f"{result['peak_smtp_lasted_ms']} ms, IMAP {result['peak_imap_lasted_ms']} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--workers", type=int, action="append")
    parser.add_argument("--concurrency", type=int, default=100, help="total, split evenly")
    parser.add_argument("--cap", type=int, default=80)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--database-url", default="sqlite")
    args = parser.parse_args()
    counts = args.workers or [1, 2, 4]
    reference = machine_reference()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(args.accounts)}
    label = database_label(args.database_url)
    print(f"{args.accounts} accounts, total concurrency {args.concurrency}, "
          f"PROBE_MAX_PER_HOST={args.cap}, +{args.latency_ms:g} ms per read, {label}",
          flush=True)
    results = []
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), \
            behind_latency(mail, args.latency_ms) as (slow_smtp, slow_imap):
        for workers in counts:
            each = args.concurrency // workers
            name = f"scaleout-{workers}"
            with counting_proxy_process(slow_smtp.port, until_client_closes=True) as smtp, \
                    counting_proxy_process(slow_imap.port, until_client_closes=True) as imap:
                env = service_env(tmp, database_url(args.database_url, tmp, name), redis_url,
                                  s3, pki, PROBE_MAX_PER_HOST=str(args.cap))
                rows = account_rows(users, smtp.port, imap.port, imap_host="127.0.0.1")
                job = run_job(tmp, name, env, rows,
                              worker_envs=[{"WORKER_CONCURRENCY": str(each)}] * workers)
            cap_held = smtp.peak <= args.cap and imap.peak <= args.cap
            once = smtp.total == imap.total == args.accounts
            result = {"workers": workers, "concurrency_each": each,
                      "seconds": round(job.seconds, 2), "peak_smtp": smtp.peak,
                      "peak_imap": imap.peak, "sessions_smtp": smtp.total,
                      "sessions_imap": imap.total, "cap_held": cap_held,
                      "peak_smtp_lasted_ms": lasted_ms(smtp.peak_lasted_s),
                      "peak_imap_lasted_ms": lasted_ms(imap.peak_lasted_s),
                      "logged_in_once": once, "counters": job.counts,
                      "counters_exact": True}  # run_job raises otherwise
            results.append(result)
            print(f"{workers} x {each}: {job.seconds:.2f}s; peak sessions SMTP {smtp.peak}, "
                  f"IMAP {imap.peak} (cap {args.cap}: {'held' if cap_held else exceeded(result)}); "
                  f"sessions SMTP {smtp.total}, IMAP {imap.total} for {args.accounts} rows; "
                  f"counters exact: {job.counts}", flush=True)
    first = results[0]["seconds"]
    print("times: " + ", ".join(f"{r['workers']} worker(s) {r['seconds']:.2f}s "
                                f"({r['seconds'] / first:.2f}x)" for r in results))
    print_result({"accounts": args.accounts, "concurrency": args.concurrency, "cap": args.cap,
                  "latency_ms": args.latency_ms, "database": label, "results": results},
                 reference)
    if not all(r["cap_held"] and r["logged_in_once"] for r in results):
        raise SystemExit("the per-host cap or once-per-protocol logins did not hold")


if __name__ == "__main__":
    main()
