"""The probe alone, on each event loop, against the raw logins: what the probe's loop costs.

The same accounts are logged into three ways, each in a fresh process, in interleaved rounds:
the stdlib baseline (tests/bench/baseline.py), and mailconnect's Prober called from 100
threads as a worker's task threads call it, once on asyncio's own loop and once on uvloop's
(the loop the service runs). No web, queue or database: CPU per account here is the probe's,
so the rest of a worker's CPU per row (tests/bench/throughput.py) is the job system's.

    python -m tests.bench.probeloop --accounts 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_network
from pathlib import Path

import uvloop

from app.credentials import Secret
from app.probe.background import LoopThread
from app.probe.model import Encryption, Endpoint, ProbeSettings
from app.probe.policy import OPEN_POLICY
from app.probe.prober import Prober
from tests.bench.baseline import run_baseline_process
from tests.bench.environment import behind_latency, bench_servers, machine_reference, print_result

CONCURRENCY = 100
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def probe_all(accounts: list[tuple[str, str]], host: str, smtp_port: int, imap_port: int,
              ca_file: str, loop: str) -> tuple[float, float, int]:
    """Seconds, CPU seconds and accounts verified, probing every account's SMTP (STARTTLS)
    and IMAP (TLS) from CONCURRENCY threads on one Prober."""
    prober = Prober(
        ProbeSettings(timeout_seconds=60, extra_ca_file=ca_file, host_policy=OPEN_POLICY,
                      allow_networks=(ip_network("127.0.0.0/8"), ip_network("::1/128"))),
        loop=LoopThread("probe-loop", LOOPS[loop]),
    )
    prober.probe_sync(None, None)  # the loop thread starts before the clock

    def one(account: tuple[str, str]) -> bool:
        user, password = account
        return prober.probe_sync(
            Endpoint(host, smtp_port, Encryption.STARTTLS, user, Secret(password)),
            Endpoint(host, imap_port, Encryption.SSL, user, Secret(password))).verified

    cpu_started, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        verified = sum(pool.map(one, accounts))
    return time.perf_counter() - started, time.process_time() - cpu_started, verified


def probe_process(accounts_file: Path, host: str, smtp_port: int, imap_port: int, ca_file: str,
                  loop: str) -> tuple[float, float, int]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.probeloop", "--child", str(accounts_file), host,
         str(smtp_port), str(imap_port), ca_file, loop],
        capture_output=True, text=True, check=True,
    )
    seconds, cpu_seconds, verified = done.stdout.split()[-3:]
    return float(seconds), float(cpu_seconds), int(verified)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    args = parser.parse_args()
    reference = machine_reference()
    size = args.accounts
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(size)}
    print(f"{size} accounts, {CONCURRENCY} at once, +{args.latency_ms:g} ms per read", flush=True)
    cpu: dict[str, list[float]] = {"baseline": [], **{loop: [] for loop in LOOPS}}
    seconds: dict[str, list[float]] = {name: [] for name in cpu}
    with bench_servers(users) as (tmp, pki, mail, _redis, _s3), \
            behind_latency(mail, args.latency_ms) as (smtp, imap):
        accounts_file = tmp / "probe-accounts.json"
        accounts_file.write_text(json.dumps(list(users.items())))
        for run in range(1, args.runs + 1):
            baseline = run_baseline_process(list(users.items()), "localhost", smtp.port,
                                            imap.port, str(pki.ca_file), CONCURRENCY, tmp)
            seconds["baseline"].append(baseline.seconds)
            cpu["baseline"].append(baseline.cpu_seconds * 1000 / size)
            line = [f"baseline {baseline.seconds:.2f}s {cpu['baseline'][-1]:.2f} ms CPU/account"]
            for loop in LOOPS:
                took, cpu_s, verified = probe_process(accounts_file, "localhost", smtp.port,
                                                      imap.port, str(pki.ca_file), loop)
                if verified != size:
                    raise SystemExit(f"{loop}: {verified} of {size} accounts verified")
                seconds[loop].append(took)
                cpu[loop].append(cpu_s * 1000 / size)
                line.append(f"{loop} {took:.2f}s {cpu[loop][-1]:.2f} ms")
            print(f"run {run}: " + ", ".join(line) + "; every account verified", flush=True)
    medians = {name: round(statistics.median(values), 3) for name, values in cpu.items()}
    ratios = {loop: round(medians[loop] / medians["baseline"], 3) for loop in LOOPS}
    print(f"medians of {args.runs}, CPU ms per account: " + ", ".join(
        f"{name} {value:.2f}" for name, value in medians.items()) + "; against the baseline: "
        + ", ".join(f"{loop} {ratio:.2f}" for loop, ratio in ratios.items()), flush=True)
    print_result({"accounts": size, "runs": args.runs, "latency_ms": args.latency_ms,
                  "cpu_ms_per_account": {k: [round(v, 3) for v in vs] for k, vs in cpu.items()},
                  "seconds": {k: [round(v, 2) for v in vs] for k, vs in seconds.items()},
                  "median_cpu_ms_per_account": medians, "cpu_ratio_to_baseline": ratios,
                  "all_verified": True}, reference)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        path, host_arg, smtp_arg, imap_arg, ca_arg, loop_arg = sys.argv[2:]
        pairs = [tuple(pair) for pair in json.loads(Path(path).read_text())]
        print(*probe_all(pairs, host_arg, int(smtp_arg), int(imap_arg), ca_arg, loop_arg))
    else:
        main()
