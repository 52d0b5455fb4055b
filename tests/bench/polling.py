"""Status-poll latency under load: 50 pollers (wrk connections) asking for one job's status
while a job of N accounts runs, with the Procfile's processes (gunicorn as its `web` line
starts it, a worker, beat), on each database given.

    python -m tests.bench.polling --accounts 5000 [--pollers 50] [--interval-ms 500]
        [--database-url sqlite --database-url postgresql+psycopg://...]

`sqlite` (the default) is a fresh SQLite file; the output carries one result per database.

First a reference with no job running: the same paced pollers on a small job already
completed, so the app's own latency reads apart from what the job's load adds. Then two
phases, one after the other, while the big job runs: pollers as clients poll (each waits a
random 0 to 2 x --interval-ms between its polls; wrk's delay() hook), then flat out (no wait:
latency is then mostly queueing, a stress figure). Needs wrk (Debian package `wrk`). Prints
wrk's latency distributions, and beside each the same polls as gunicorn timed them, from its
access log: from a thread having parsed the request to the response written. The difference
is the request's wait outside the app: in the kernel, for a gunicorn thread, and wrk's own
wait for a core. JSON line last.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import redis

from tests.bench.environment import (
    BenchServers,
    bench_servers,
    machine_reference,
    print_result,
    service_env,
    web_process,
)
from tests.bench.system import HttpApi, database_label, database_url
from tests.bench.throughput import account_rows
from tests.servers.worker import celery_process, wait_ready
from tests.workers.conftest import Api

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
# The reference job, completed before the pollers' first run.
IDLE_JOB_ACCOUNTS = 5


def percentile_ms(output: str, label: str) -> float:
    number, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(number) * UNITS[unit]


def server_side_ms(log: Path, offset: int, path: str) -> dict:
    """p50 and p99 of durationMs in gunicorn's JSON access lines for `path` written after
    `offset`."""
    with log.open("rb") as lines:
        lines.seek(offset)
        polls = sorted(
            line["durationMs"] for line in map(_json_or_none, lines)
            if line and line.get("path") == path and "durationMs" in line)
    if not polls:
        raise SystemExit(f"no requests for {path} in {log}'s access lines")
    return {"polls": len(polls), "p50_ms": statistics.median(polls),
            "p99_ms": polls[min(len(polls) - 1, int(len(polls) * 0.99))]}


def _json_or_none(line: bytes) -> dict | None:
    try:
        found = json.loads(line)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3, help="paced runs; the median is kept")
    parser.add_argument("--interval-ms", type=int, default=500)
    parser.add_argument("--database-url", action="append",
                        help="repeatable; `sqlite` (the default) is a fresh SQLite file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    reference = machine_reference()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(args.accounts)}
    results = {}
    with bench_servers(users) as servers:
        for given in args.database_url or ["sqlite"]:
            label = database_label(given)
            print(f"=== {label}: {args.accounts} accounts, {args.pollers} pollers", flush=True)
            results[label] = poll_during_job(servers, database_url(given, servers.tmp, label),
                                             users, args)
            print(f"{label}: paced p99 median {results[label]['paced_median_p99_ms']:.1f} ms",
                  flush=True)
    print_result({"accounts": args.accounts, "pollers": args.pollers,
                  "interval_ms": args.interval_ms, "databases": results}, reference)


def poll_during_job(servers: BenchServers, db_url: str, users: dict[str, str],
                    args: argparse.Namespace) -> dict:
    tmp, pki, mail, redis_url, s3 = servers
    name = Path(db_url).stem if db_url.startswith("sqlite") else "postgresql"
    # JSON access lines carry each request's durationMs (server_side_ms).
    env = service_env(tmp, db_url, redis_url, s3, pki, PROBE_MAX_PER_HOST="100", LOG_FORMAT="json")
    api = Api(env)
    with ExitStack() as stack:
        worker = stack.enter_context(celery_process("worker", env, tmp, name=f"{name}-worker"))
        stack.enter_context(celery_process("beat", env, tmp, name=f"{name}-beat",
                                           extra=["--schedule", str(tmp / f"{name}-beat")]))
        base_url, web = stack.enter_context(web_process(env, tmp, name=f"{name}-web"))
        http = HttpApi(base_url, api.key)
        wait_ready(worker)
        pacing = tmp / "pace.lua"
        # Independent clients: a random wait averaging the interval, so the pollers do not
        # stay in lockstep (a fixed wait keeps all 50 arriving in the same instant).
        pacing.write_text(f"function delay()\n  return math.random(0, {2 * args.interval_ms})\n"
                          "end\n")
        paced_script = ["-s", str(pacing)]

        def polls(request_id: str, script: list[str], title: str) -> dict:
            path = f"/v1/email-accounts/connect/status/{request_id}"
            logged = web.log.stat().st_size
            wrk = subprocess.run(["wrk", "-t2", f"-c{args.pollers}", f"-d{args.seconds}s",
                                  "--latency", *script, "-H", f"x-api-key: {api.key}",
                                  base_url + path],
                                 capture_output=True, text=True, check=True).stdout
            print(f"--- {title}")
            print(wrk, flush=True)
            server = server_side_ms(web.log, logged, path)
            print(f"    the same polls in gunicorn: p50 {server['p50_ms']:.1f} ms, "
                  f"p99 {server['p99_ms']:.1f} ms ({server['polls']} polls)", flush=True)
            return {"p50_ms": percentile_ms(wrk, "50"), "p99_ms": percentile_ms(wrk, "99"),
                    "requests_per_s": float(
                        re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1)),
                    "server": server}

        small = dict(list(users.items())[:IDLE_JOB_ACCOUNTS])
        idle_job = http.submit(account_rows(small, mail.submission_port, mail.imaps_port))
        finished = http.wait(idle_job, timeout=300)
        idle = polls(idle_job, paced_script,
                     f"no job running: each poller every {args.interval_ms} ms on average, "
                     f"on a completed job of {IDLE_JOB_ACCOUNTS} accounts")
        request_id = http.submit(account_rows(users, mail.submission_port, mail.imaps_port))
        time.sleep(2)
        paced = [polls(request_id, paced_script, f"paced run {run}: each poller every "
                       f"{args.interval_ms} ms on average") for run in range(1, args.runs + 1)]
        flat_out = polls(request_id, [], "flat out: no wait between polls")
        during = http.status(request_id)
    api.services.db.dispose()
    # The job is left unfinished: its queued messages and host slots must not reach the next
    # database's worker.
    redis.Redis.from_url(redis_url).flushall()
    print(f"job after polling: {during['processed']} of {during['total']} processed, "
          f"status {during['status']}")
    median_p99 = statistics.median(r["p99_ms"] for r in paced)
    server_p99 = statistics.median(r["server"]["p99_ms"] for r in paced)
    per_run = ", ".join(f"{r['p99_ms']:.1f}" for r in paced)
    print(f"paced p99 per run: {per_run} ms; median {median_p99:.1f} ms "
          f"(in gunicorn: median p99 {server_p99:.1f} ms); with no job running "
          f"{idle['p99_ms']:.1f} ms (in gunicorn {idle['server']['p99_ms']:.1f} ms)")
    return {"paced": paced, "paced_median_p99_ms": median_p99,
            "paced_median_server_p99_ms": server_p99, "flat_out": flat_out,
            "idle": {**idle, "job_processed": finished["processed"]},
            "job_running": during["status"] == "running"}


if __name__ == "__main__":
    main()
