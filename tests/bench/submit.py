"""How long POST /v1/email-accounts/connect takes to answer 200 for N rows, and the web
process's peak RSS meanwhile. Three bodies: JSON, the same as CSV, and JSON rows that name
no server or provider, each on its own unknown domain (the rows whose provider a worker
detects from MX records: the POST must not look anything up).

    python -m tests.bench.submit --rows 10000 [--database-url postgresql://...]

Runs the real web app with the Procfile's `web` command (gunicorn) against SQLite or the given
database; publishing goes to a private Redis. Prints each run and the median, JSON last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests

from app.clock import SystemClock
from app.config import load_settings
from app.credentials import CredentialCipher
from app.db import Database
from app.migrate import upgrade
from app.teams import create_api_key
from tests.bench.environment import machine_reference, print_result
from tests.bench.memory import MB, peak_rss
from tests.factories import bulk_row
from tests.servers.redis_server import private_redis
from tests.servers.web import procfile_gunicorn


def rows(count: int) -> list[dict]:
    return [bulk_row(f"user{i}@example.com") for i in range(count)]


def unknown_domain_rows(count: int) -> list[dict]:
    # No host, port, encryption or provider: the provider is to be recognised from MX records.
    return [bulk_row(f"user@domain{i}.unknown.example", emailServiceProvider=None,
                     smtpHost=None, smtpPort=None, smtpEncryption=None, imapHost=None,
                     imapPort=None, imapEncryption=None) for i in range(count)]


def csv_body(records: list[dict]) -> bytes:
    import pandas as pd

    return pd.DataFrame(records).to_csv(index=False).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    reference = machine_reference()

    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis_url:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        url = load_settings(DATABASE_URL=url).sqlalchemy_url
        upgrade(url)
        db = Database(url)
        key = create_api_key(db, SystemClock(), "bench").key
        env = {"DATABASE_URL": url, "REDIS_URL": redis_url,
               "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
               "MAILCONNECT_DATA_DIR": tmp, "S3_ENDPOINT_URL": "http://127.0.0.1:9"}
        with procfile_gunicorn("web", env, Path(tmp) / "web.log") as (base_url, web):
            endpoint = f"{base_url}/v1/email-accounts/connect"
            headers = {"x-api-key": key}
            body = json.dumps(rows(args.rows)).encode()
            csv = csv_body(rows(args.rows))
            results = {}
            web_peak = 0
            unknown = json.dumps(unknown_domain_rows(args.rows)).encode()
            for name, data, content_type in (("json", body, "application/json"),
                                             ("csv", csv, "text/csv"),
                                             ("unknown_domains", unknown, "application/json")):
                times = []
                for run in range(args.runs):
                    with peak_rss(web.popen.pid, largest_process=True) as peak:
                        started = time.perf_counter()
                        response = requests.post(endpoint, data=data, timeout=120, headers={
                            **headers, "Content-Type": content_type})
                        elapsed = time.perf_counter() - started
                    assert response.status_code == 200, response.text
                    times.append(elapsed)
                    web_peak = max(web_peak, peak())
                    print(f"{name} run {run + 1}: {args.rows} rows -> 200 in {elapsed:.3f}s")
                results[name] = statistics.median(times)
                print(f"{name} median: {results[name]:.3f}s")
            print(f"peak RSS of one web worker process: {web_peak / MB:.0f} MB")
    print_result({"rows": args.rows, "database": url.split(":")[0],
                      "json_median_s": round(results["json"], 3),
                      "csv_median_s": round(results["csv"], 3),
                      "unknown_domains_median_s": round(results["unknown_domains"], 3),
                      "web_peak_rss_mb": round(web_peak / MB, 1)}, reference)


if __name__ == "__main__":
    main()
