"""The job path alone: what a worker spends on a row around its probe (the claim, the host
gate, the login quota, the result transaction), with a prober that answers at once.

    python -m tests.bench.jobpath [--rows 2000] [--runs 3]
        [--database-url sqlite --database-url postgresql+psycopg://...]

The runner runs as a worker runs it (RowProcessor.run, a message's budget of rows at a time,
each follow-up message run in turn), from one thread, on a real database and a private
redis-server, with no Celery, web process or mail server. Per database: CPU milliseconds per
row (median of the runs) and database commits per row. A JSON line last.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

from app.config import load_settings
from app.jobs.intake import submit_job
from app.jobs.runner import RetryPolicy, RowProcessor, start_job
from app.migrate import upgrade
from app.services import Services, build_services
from app.teams import create_api_key
from tests.app.jobs.doubles import FakeProber, RecordingQueue
from tests.bench.environment import machine_reference, print_result
from tests.bench.system import database_label, database_url
from tests.factories import bulk_row
from tests.servers.redis_server import private_redis


def one_run(services: Services, rows: int) -> tuple[float, float]:
    """(CPU ms per row, commits per row) for one job of `rows` rows."""
    team_id = create_api_key(services.db, services.clock, "bench").team_id
    records = [bulk_row(f"u{i}@example.com", smtpHost=f"smtp{i % 7}.example.com",
                        imapHost=f"imap{i % 7}.example.com") for i in range(rows)]
    job_id = submit_job(services.db, services.cipher, services.clock, team_id, records,
                        policy=services.settings.host_policy).job_id
    start_job(services.db, services.clock, job_id)
    runner = RowProcessor(db=services.db, clock=services.clock, cipher=services.cipher,
                          prober=FakeProber(), gate=services.gate, policy=RetryPolicy(),
                          lease_seconds=60, quota=services.login_quota)
    commits = 0

    def committed(_connection) -> None:
        nonlocal commits
        commits += 1

    # Only the runners each run announces are run here, one after another.
    queue, announced = RecordingQueue(), 1
    event.listen(services.db.engine, "commit", committed)
    started = time.process_time()
    try:
        while announced:
            announced -= 1
            published = len(queue.published)
            runner.run(queue, job_id=job_id)
            announced += sum(message[2] for message in queue.published[published:]
                             if message[0] == "run_rows")
    finally:
        cpu = time.process_time() - started
        event.remove(services.db.engine, "commit", committed)
    return cpu * 1000 / rows, commits / rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", action="append")
    args = parser.parse_args()
    reference = machine_reference()
    results = []
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis_url:
        for given in args.database_url or ["sqlite"]:
            settings = load_settings(
                MAILCONNECT_DATA_DIR=tmp, REDIS_URL=redis_url,
                DATABASE_URL=database_url(given, Path(tmp), "jobpath"),
                S3_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench", TEAM_MAX_LOGINS_PER_HOUR=str(10 ** 9))
            upgrade(settings.sqlalchemy_url)
            services = build_services(settings)
            runs = [one_run(services, args.rows) for _ in range(args.runs)]
            services.db.engine.dispose()
            label = database_label(given)
            cpu = statistics.median(r[0] for r in runs)
            commits = statistics.median(r[1] for r in runs)
            print(f"{args.rows} rows, {label}: CPU ms per row "
                  f"{' / '.join(f'{r[0]:.3f}' for r in runs)} (median {cpu:.3f}); "
                  f"{commits:.2f} commits per row", flush=True)
            results.append({"database": label, "rows": args.rows,
                            "cpu_ms_per_row": [round(r[0], 3) for r in runs],
                            "median_cpu_ms_per_row": round(cpu, 3),
                            "commits_per_row": round(commits, 3)})
    print_result({"results": results}, reference)


if __name__ == "__main__":
    main()
