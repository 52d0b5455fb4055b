"""`mailconnect import accounts.csv --wait` and its sister commands against a live service:
gunicorn as the Procfile starts it, a Celery worker, and Dovecot as the mailboxes' server.
The commands run as a user runs them, in their own process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from app.probe.hints import GENERIC_HINTS
from app.probe.model import ErrorCode
from tests.factories import mail_row
from tests.servers.dovecot import start_mail_server
from tests.servers.web import web
from tests.servers.worker import celery_process, wait_ready
from tests.workers.conftest import Api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
USERS = {"good@cli.test": "right-password-1", "bad@cli.test": "right-password-2"}


def mailconnect(args: list[str], base: str, key: str) -> subprocess.CompletedProcess[str]:
    # The key comes from the environment, as documented; wide columns so hints stay on a line.
    env = {**os.environ, "MAILCONNECT_URL": base, "MAILCONNECT_API_KEY": key, "COLUMNS": "250"}
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert key not in done.stdout + done.stderr
    return done


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as lines:
        return list(csv.DictReader(lines))


def test_import_wait_status_and_accounts_list_against_a_live_service(env, tmp_path, pki):
    with ExitStack() as stack:
        mail = stack.enter_context(start_mail_server(tmp_path / "dovecot", pki, USERS))
        worker = stack.enter_context(celery_process("worker", env, tmp_path))
        base, _web = stack.enter_context(web(env, tmp_path))
        wait_ready(worker)
        key = Api(env).key
        ssl = ((mail.submissions_port, "ssl"), (mail.imaps_port, "ssl"))
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        accounts = write_csv(inputs / "accounts.csv", [
            mail_row("good@cli.test", USERS["good@cli.test"], *ssl),
            mail_row("bad@cli.test", "not-the-password", *ssl),
        ])

        imported = mailconnect(["import", str(accounts), "--wait"], base, key)
        assert imported.returncode == 1, imported  # a row failed
        # Progress, a line per change (stderr is not a terminal), ends with the final counts.
        progress = imported.stderr.splitlines()
        assert progress[-1] == "completed: 2/2 rows (1 verified, 1 failed, 0 pending)", progress
        out = imported.stdout
        assert "completed, 2/2 rows (1 verified, 1 failed, 0 pending)" in out
        # The errors table: the code, its count, and the hint the service put in the report.
        table_row = next(line for line in out.splitlines() if "auth_failed" in line)
        assert [cell.strip() for cell in table_row.split("│")[1:3]] == ["auth_failed", "1"]
        assert GENERIC_HINTS[ErrorCode.AUTH_FAILED][:60] in out
        report = inputs / "accounts.report.csv"
        failed_rows = inputs / "accounts.failed-rows.csv"
        assert f"report: {report}" in out and f"failed-rows: {failed_rows}" in out
        rows = read_csv(report)
        assert [(r["email"], r["status"], r["errorCode"]) for r in rows] == [
            ("good@cli.test", "connected", ""), ("bad@cli.test", "failed", "auth_failed")]
        assert [r["smtpEmailAddress"] for r in read_csv(failed_rows)] == ["bad@cli.test"]
        assert USERS["good@cli.test"] not in report.read_text()

        # Without --wait: the requestId alone; then `status --wait` follows it to its end.
        only_good = write_csv(inputs / "good.csv", [mail_row("good@cli.test",
                                                        USERS["good@cli.test"], *ssl)])
        submitted = mailconnect(["import", str(only_good)], base, key)
        assert submitted.returncode == 0, submitted
        request_id = submitted.stdout.strip()
        assert len(request_id.split()) == 1 and len(request_id) >= 16
        downloads = tmp_path / "downloads"
        waited = mailconnect(["status", request_id, "--wait", "--download", str(downloads)],
                             base, key)
        assert waited.returncode == 0, waited  # every row verified
        assert "completed: 1/1 rows (1 verified, 0 failed, 0 pending)" in waited.stderr
        assert [r["status"] for r in read_csv(downloads / f"{request_id}.report.csv")] == [
            "connected"]
        one_shot = mailconnect(["status", request_id, "--json"], base, key)
        assert one_shot.returncode == 0
        assert json.loads(one_shot.stdout)["status"]["succeeded"] == 1

        listed = mailconnect(["accounts", "list"], base, key)
        assert listed.returncode == 0, listed
        assert "good@cli.test" in listed.stdout and "failed (auth_failed)" in listed.stdout
        connected = mailconnect(["accounts", "list", "--status", "1", "--limit", "5", "--json"],
                                base, key)
        payload = json.loads(connected.stdout)
        assert [a["email"] for a in payload["accounts"]] == ["good@cli.test"]
        assert (payload["limit"], payload["total"]) == (5, 1)

        # Refusals: exit 2 with the server's message naming the field, never a traceback.
        wrong_key = mailconnect(["import", str(accounts), "--wait"], base, "mc_not_a_key_at_all")
        assert wrong_key.returncode == 2
        assert "401 x-api-key: is not a valid API key" in wrong_key.stderr
        not_array = inputs / "one.json"
        not_array.write_text('{"smtpEmailAddress": "a@b.test"}')
        refused = mailconnect(["import", str(not_array)], base, key)
        assert refused.returncode == 2 and "422 body: must be a JSON array" in refused.stderr
        unknown = mailconnect(["status", "0123456789abcdef0123"], base, key)
        assert unknown.returncode == 2 and "404 requestId: no import" in unknown.stderr
    nobody = mailconnect(["accounts", "list"], base, key)  # the service has stopped
    assert nobody.returncode == 2 and base in nobody.stderr
