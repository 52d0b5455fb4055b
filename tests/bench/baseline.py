"""The machine's own limit: the same SMTP and IMAP logins with the same concurrency, and
nothing else (no web, queue, database or report). Deliberately independent of mailconnect's
probe: the standard library's smtplib and imaplib, in a thread pool.

It runs in a process of its own, as mailconnect's worker does, so it shares no interpreter
with the benchmark's proxies and relay sink:

    python -m tests.bench.baseline ACCOUNTS_JSON HOST SMTP_PORT IMAP_PORT CA_FILE CONCURRENCY
"""

from __future__ import annotations

import imaplib
import json
import smtplib
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple


class BaselineRun(NamedTuple):
    seconds: float
    cpu_seconds: float  # the baseline process's own CPU over the same span




def smtp_login(host: str, port: int, user: str, password: str, context: ssl.SSLContext) -> None:
    with smtplib.SMTP(host, port, local_hostname="baseline.localdomain", timeout=60) as smtp:
        smtp.starttls(context=context)
        smtp.login(user, password)


def imap_login(host: str, port: int, user: str, password: str, context: ssl.SSLContext) -> None:
    imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=60)
    try:
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
    finally:
        imap.logout()


def run_baseline(accounts: list[tuple[str, str]], host: str, smtp_port: int, imap_port: int,
                 ca_file: str, concurrency: int) -> BaselineRun:
    """Seconds (and CPU seconds) to log every account in over SMTP (STARTTLS) and IMAP (TLS),
    both at once per account, `concurrency` accounts at a time."""
    context = ssl.create_default_context(cafile=ca_file)
    cpu_started = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2 * concurrency) as pool:
        futures = [pool.submit(smtp_login, host, smtp_port, u, p, context) for u, p in accounts]
        futures += [pool.submit(imap_login, host, imap_port, u, p, context) for u, p in accounts]
        for future in futures:
            future.result()
    return BaselineRun(time.perf_counter() - started, time.process_time() - cpu_started)


def run_baseline_process(accounts: list[tuple[str, str]], host: str, smtp_port: int,
                         imap_port: int, ca_file: str, concurrency: int, workdir: Path
                         ) -> BaselineRun:
    """run_baseline in a fresh interpreter (its start-up not counted)."""
    accounts_file = workdir / "baseline-accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.baseline", str(accounts_file), host, str(smtp_port),
         str(imap_port), ca_file, str(concurrency)],
        capture_output=True, text=True, check=True,
    )
    seconds, cpu_seconds = done.stdout.strip().splitlines()[-1].split()
    return BaselineRun(float(seconds), float(cpu_seconds))


if __name__ == "__main__":
    path, host_arg, smtp_arg, imap_arg, ca_arg, concurrency_arg = sys.argv[1:]
    pairs = [tuple(pair) for pair in json.loads(Path(path).read_text())]
    print(*run_baseline(pairs, host_arg, int(smtp_arg), int(imap_arg), ca_arg,
                        int(concurrency_arg)))
