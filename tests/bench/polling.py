"""Status-poll latency under load: 50 pollers (wrk connections) asking for one job's status
while a job of N accounts runs, behind gunicorn started by the Procfile's `web` line.

    python -m tests.bench.polling --accounts 5000 [--pollers 50] [--interval-ms 500]
        [--database-url postgresql+psycopg://...]

Two phases, one after the other, while the job runs: pollers as clients poll (each waits a
random 0 to 2 x --interval-ms between its polls; wrk's delay() hook), then flat out (no wait:
latency is then mostly queueing, a stress figure). Needs wrk (Debian package `wrk`). Prints
wrk's latency distributions; JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from contextlib import ExitStack

import requests

from app.devserver import free_port, wait_for_port
from tests.bench.environment import bench_servers, procfile_web, service_env
from tests.factories import bulk_row
from tests.servers.worker import ROOT, celery_process
from tests.workers.conftest import Api

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def percentile_ms(output: str, label: str) -> float:
    number, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(number) * UNITS[unit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3, help="paced runs; the median is kept")
    parser.add_argument("--interval-ms", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(args.accounts)}
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), ExitStack() as stack:
        env = service_env(tmp, args.database_url or f"sqlite:///{tmp}/bench.db", redis_url, s3, pki,
                          PROBE_MAX_PER_HOST="100")
        api = Api(env)
        port = free_port()
        web = subprocess.Popen(["bash", "-c", f"exec {procfile_web()}"], cwd=ROOT,
                               env={**os.environ, **env, "PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        stack.callback(web.wait)
        stack.callback(web.terminate)
        wait_for_port(port, web, "gunicorn")
        stack.enter_context(celery_process("worker", env, tmp))
        rows = [bulk_row(u, smtpPassword=pw, imapPassword=pw, smtpHost="localhost",
                         smtpPort=mail.submission_port, smtpEncryption="starttls",
                         imapHost="localhost", imapPort=mail.imaps_port, imapEncryption="ssl")
                for u, pw in users.items()]
        time.sleep(3)
        response = requests.post(f"http://127.0.0.1:{port}/v1/email-accounts/connect",
                                 json=rows, headers={"x-api-key": api.key}, timeout=120)
        request_id = response.json()["payload"]["requestId"]
        url = f"http://127.0.0.1:{port}/v1/email-accounts/connect/status/{request_id}"
        time.sleep(2)
        pacing = tmp / "pace.lua"
        # Independent clients: a random wait averaging the interval, so the pollers do not
        # stay in lockstep (a fixed wait keeps all 50 arriving in the same instant).
        pacing.write_text(f"function delay()\n  return math.random(0, {2 * args.interval_ms})\n"
                          "end\n")
        paced, flat_out = [], []
        for phase, script, runs in (("paced", ["-s", str(pacing)], args.runs),
                                    ("flat_out", [], 1)):
            for run in range(1, runs + 1):
                wrk = subprocess.run(["wrk", "-t2", f"-c{args.pollers}", f"-d{args.seconds}s",
                                      "--latency", *script, "-H", f"x-api-key: {api.key}", url],
                                     capture_output=True, text=True, check=True).stdout
                print(f"--- {phase} run {run}" + (
                    f": each poller every {args.interval_ms} ms on average"
                    if phase == "paced" else ": no wait between polls"))
                print(wrk)
                (paced if phase == "paced" else flat_out).append({
                    "p50_ms": percentile_ms(wrk, "50"), "p99_ms": percentile_ms(wrk, "99"),
                    "requests_per_s": float(
                        re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))})
        during = api.status(request_id)
    print(f"job after polling: {during['processed']} of {during['total']} processed, "
          f"status {during['status']}")
    median_p99 = statistics.median(r["p99_ms"] for r in paced)
    per_run = ", ".join(f"{r['p99_ms']:.1f}" for r in paced)
    print(f"paced p99 per run: {per_run} ms; median {median_p99:.1f} ms")
    print(json.dumps({"accounts": args.accounts, "pollers": args.pollers,
                      "interval_ms": args.interval_ms, "paced": paced,
                      "paced_median_p99_ms": median_p99, "flat_out": flat_out[0],
                      "job_running": during["status"] == "running"}))

if __name__ == "__main__":
    main()
