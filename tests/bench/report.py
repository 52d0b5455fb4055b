"""Time and memory to build and upload a job's CSV report.

    python -m tests.bench.report --rows 50000 --rows 5000 [--database-url ...]

Fills a job with finished rows straight in the database, then times `finish_job` (stream
rows in chunks, pandas CSV, boto3 upload to moto's S3 server, which runs in its own process)
and records the peak of Python allocations while it runs. JSON line last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import update

from app.clock import SystemClock
from app.config import load_settings
from app.credentials import CredentialCipher
from app.db import Database
from app.jobs.finish import finish_job
from app.jobs.intake import submit_job
from app.migrate import upgrade
from app.models import ConnectJob, ConnectJobRow
from app.storage import S3ReportStore
from app.teams import create_api_key
from tests.bench.environment import machine_reference, print_result
from tests.factories import bulk_row
from tests.servers.s3 import moto_s3_process


def finished_job(db: Database, team_id: int, rows: int) -> str:
    cipher = CredentialCipher([CredentialCipher.generate_key()])
    job = submit_job(db, cipher, SystemClock(), team_id,
                     [bulk_row(f"u{i}@example.com") for i in range(rows)])
    with db.transaction() as session:
        session.execute(update(ConnectJobRow).where(ConnectJobRow.job_id == job.job_id).values(
            state="done", credentials=None, account_status=0, smtp_result="failed",
            smtp_error_code="auth_failed", smtp_error="535 5.7.8 Username and Password not "
            "accepted", imap_result="ok", duration_ms=321, account_id=1, attempts=1))
        session.execute(update(ConnectJob).where(ConnectJob.id == job.job_id)
                        .values(processed=rows, failed=rows, status="running"))
    return job.job_id


def measure(db: Database, store: S3ReportStore, team_id: int, rows: int) -> dict:
    # Timed without tracemalloc (it slows every allocation), then measured on a twin job.
    timed, traced = finished_job(db, team_id, rows), finished_job(db, team_id, rows)
    started = time.perf_counter()
    assert finish_job(db, SystemClock(), store, timed)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    assert finish_job(db, SystemClock(), store, traced)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rows": rows, "seconds": round(elapsed, 2), "peak_mb": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    reference = machine_reference()
    with tempfile.TemporaryDirectory() as tmp, moto_s3_process() as s3:
        url = load_settings(DATABASE_URL=args.database_url or f"sqlite:///{tmp}/r.db"
                            ).sqlalchemy_url
        upgrade(url)
        db = Database(url)
        team_id = create_api_key(db, SystemClock(), f"bench-{Path(tmp).name}").team_id
        store = S3ReportStore("bench", s3, access_key_id="bench", secret_access_key="bench")
        store.ensure_bucket()
        results = []
        for rows in args.rows or [50_000]:
            result = measure(db, store, team_id, rows)
            print(f"{rows} rows: report built and uploaded in {result['seconds']}s, "
                  f"peak Python allocations {result['peak_mb']} MB")
            results.append(result)
    print_result({"reports": results}, reference)


if __name__ == "__main__":
    main()
