"""A job whose rows all go to one busy host: how much work the per-host cap costs.

    python -m tests.bench.busyhost --rows 2000 --cap 5 [--latency-ms 20] [--database-url URL]

Every account's SMTP and IMAP go to one host name (so one slot per account), Dovecot behind
the latency proxy, with PROBE_HOST_LIMITS giving that host a cap of --cap. One worker with the
default concurrency (100), so most runners find the host busy. Prints:
- claims per row: sum of the rows' `claims` / rows (a row set aside and woken is claimed
  twice);
- broker messages per row: LPUSH calls on the benchmark's private Redis (Celery's Redis
  transport publishes every message, countdowns included, with one LPUSH; the host gate's
  waiting lists use RPUSH), from just before the POST to completion, / rows;
- wall time, POST to `completed`, against rows x one probe's time / cap, where one probe's
  time is the mean `durationMs` of this job's own rows (so rows x it is the slot time the
  job needs; the ratio against the median is printed too);
- the peak concurrent sessions per protocol while their client holds them open (must never
  exceed the cap), counted by a proxy in front of the latency proxy, in a process of its own
  (so that it sees accepts and closes in the kernel's order; see tests/servers/counting_proxy.py).
One JSON line last.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack

import redis
from sqlalchemy import func, select

from app.db import Database
from app.models import ConnectJobRow
from tests.bench.environment import bench_servers, machine_reference, print_result, service_env
from tests.factories import bulk_row
from tests.servers.counting_proxy import counting_proxy, counting_proxy_process
from tests.servers.worker import celery_process
from tests.workers.conftest import Api

HOST = "127.0.0.1"


def lpush_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--cap", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    reference = machine_reference()
    users = {f"busy{i}@example.test": f"pw-{i}" for i in range(args.rows)}
    with bench_servers(users) as (tmp, pki, mail, redis_url, s3), ExitStack() as stack:
        delay = args.latency_ms / 1000
        slow_smtp = stack.enter_context(counting_proxy(mail.submission_port, delay_seconds=delay))
        slow_imap = stack.enter_context(counting_proxy(mail.imaps_port, delay_seconds=delay))
        # Counted in front of the latency, while the client holds each session open: the
        # delaying relay keeps a session a little longer than its client does.
        smtp = stack.enter_context(counting_proxy_process(slow_smtp.port,
                                                          until_client_closes=True))
        imap = stack.enter_context(counting_proxy_process(slow_imap.port,
                                                          until_client_closes=True))
        db_url = args.database_url or f"sqlite:///{tmp}/busyhost.db"
        env = service_env(tmp, db_url, redis_url, s3, pki,
                          PROBE_HOST_LIMITS=f"{HOST}={args.cap}")
        api = Api(env)
        rows = [bulk_row(user, smtpPassword=pw, imapPassword=pw, smtpHost=HOST,
                         smtpPort=smtp.port, smtpEncryption="starttls", imapHost=HOST,
                         imapPort=imap.port, imapEncryption="ssl")
                for user, pw in users.items()]
        broker = redis.Redis.from_url(redis_url)
        worker = stack.enter_context(celery_process("worker", env, tmp, name="busyhost"))
        time.sleep(3)  # the worker connects before the clock starts
        pushes_before = lpush_calls(broker)
        started = time.perf_counter()
        request_id = api.submit(rows)
        status = api.wait(request_id, timeout=7200, diagnostics=worker.tail)
        elapsed = time.perf_counter() - started
        messages = lpush_calls(broker) - pushes_before
        db = Database(api.services.settings.sqlalchemy_url)
        with db.reading() as session:
            claims = session.scalar(select(func.sum(ConnectJobRow.claims))
                                    .where(ConnectJobRow.job_id == request_id))
            durations = session.scalars(select(ConnectJobRow.duration_ms)
                                        .where(ConnectJobRow.job_id == request_id)).all()
        db.dispose()
    probe_s = statistics.mean(durations) / 1000
    ideal = args.rows * probe_s / args.cap
    median_ideal = args.rows * statistics.median(durations) / 1000 / args.cap
    print(f"{args.rows} rows on one host, cap {args.cap}, +{args.latency_ms:g} ms per read: "
          f"completed in {elapsed:.1f}s, succeeded {status['succeeded']}")
    print(f"claims per row: {claims / args.rows:.3f} ({claims} claims)")
    print(f"broker messages per row: {messages / args.rows:.3f} ({messages} LPUSH calls)")
    print(f"one probe (mean durationMs): {probe_s * 1000:.0f} ms; rows x probe / cap = "
          f"{ideal:.1f}s; wall time ratio {elapsed / ideal:.3f} "
          f"({elapsed / median_ideal:.3f} against the median probe)")
    print(f"peak concurrent sessions: SMTP {smtp.peak}, IMAP {imap.peak} (cap {args.cap})")
    print_result({
        "rows": args.rows, "cap": args.cap, "latency_ms": args.latency_ms,
        "succeeded": status["succeeded"], "claims": claims,
        "claims_per_row": round(claims / args.rows, 3), "messages": messages,
        "messages_per_row": round(messages / args.rows, 3),
        "probe_ms": round(probe_s * 1000, 1), "ideal_s": round(ideal, 2),
        "seconds": round(elapsed, 2), "wall_ratio": round(elapsed / ideal, 3),
        "wall_ratio_median_probe": round(elapsed / median_ideal, 3),
        "peak_smtp": smtp.peak, "peak_imap": imap.peak,
    }, reference)


if __name__ == "__main__":
    main()
