"""Peak concurrent sessions to one host during a job, with PROBE_MAX_PER_HOST as the cap.

    python -m tests.bench.hostcap --accounts 300 --cap 5 --workers 2

Every account's SMTP and IMAP both go to one Dovecot, each through a counting proxy, so each
protocol's host sees the cap. Workers run the default concurrency (WORKER_CONCURRENCY=100).
The proxies run in processes of their own and count a session while its client holds it, in
the kernel's order of accepts and closes (tests/servers/counting_proxy.py), so a peak above
the cap is one the workers really held. One JSON line last.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack

from tests.bench.environment import bench_servers, machine_reference, print_result, service_env
from tests.factories import bulk_row
from tests.servers.counting_proxy import counting_proxy_process
from tests.servers.worker import celery_process
from tests.workers.conftest import Api


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--cap", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    reference = machine_reference()
    users = {f"user{i}@example.test": f"pw-{i}" for i in range(args.accounts)}
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), ExitStack() as stack:
        smtp = stack.enter_context(counting_proxy_process(mail.submission_port,
                                                          until_client_closes=True))
        imap = stack.enter_context(counting_proxy_process(mail.imaps_port,
                                                          until_client_closes=True))
        db_url = f"sqlite:///{tmp}/bench.db"
        env = service_env(tmp, db_url, redis_url, s3, pki,
                          PROBE_MAX_PER_HOST=str(args.cap))
        api = Api(env)
        # Two host names, one per protocol, so each protocol's sessions are capped and counted.
        rows = [bulk_row(user, smtpPassword=pw, imapPassword=pw, smtpHost="localhost",
                         smtpPort=smtp.port, smtpEncryption="starttls", imapHost="127.0.0.1",
                         imapPort=imap.port, imapEncryption="ssl")
                for user, pw in users.items()]
        workers = [stack.enter_context(celery_process("worker", env, tmp, name=f"w{i}"))
                   for i in range(args.workers)]
        time.sleep(3)
        started = time.perf_counter()
        request_id = api.submit(rows)
        status = api.wait(request_id, timeout=1800, diagnostics=workers[0].tail)
        elapsed = time.perf_counter() - started
    print(f"{args.accounts} accounts, cap {args.cap}, {args.workers} workers: "
          f"completed in {elapsed:.1f}s, succeeded {status['succeeded']}")
    print(f"peak concurrent SMTP sessions to localhost: {smtp.peak} (of {smtp.total})")
    print(f"peak concurrent IMAP sessions to 127.0.0.1: {imap.peak} (of {imap.total})")
    cap_held = smtp.peak <= args.cap and imap.peak <= args.cap
    print(f"cap {args.cap}: {'held' if cap_held else 'EXCEEDED'}")
    print_result({"accounts": args.accounts, "cap": args.cap, "workers": args.workers,
                  "seconds": round(elapsed, 1), "succeeded": status["succeeded"],
                  "peak_smtp": smtp.peak, "peak_imap": imap.peak,
                  "sessions_smtp": smtp.total, "sessions_imap": imap.total,
                  "cap_held": cap_held}, reference)


if __name__ == "__main__":
    main()
