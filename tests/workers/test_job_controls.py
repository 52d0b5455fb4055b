"""Job controls end to end, with a real worker: cancel mid-job, the failed-rows file, the signed
webhook, and retrying failed rows with the stored credentials."""

import csv
import io
import socket
import time

import pytest
import requests

from app.teams import team_for_key, webhook_secret
from tests.app.jobs.test_webhooks import receiver
from tests.conftest import USERS
from tests.factories import bulk_row
from tests.servers.worker import celery_process

pytestmark = pytest.mark.integration


def mailbox(server, email, password):
    return bulk_row(email, smtpPassword=password, imapPassword=password, smtpHost="localhost",
                    smtpPort=server.submission_port, smtpEncryption="starttls",
                    imapHost="localhost", imapPort=server.imaps_port, imapEncryption="ssl")


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def download(url: str) -> list[dict[str, str]]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.text)))


def test_cancel_mid_job_ends_cancelled_with_files_and_a_signed_webhook(
        api, env, tmp_path, mail_server):
    # Rows on a host that never answers take a probe timeout each, two at a time (two worker
    # threads): slow enough to cancel while most are still pending.
    env.update(PROBE_TIMEOUT_SECONDS="2", PROBE_RETRY_ATTEMPTS="1", WORKER_CONCURRENCY="2",
               WEBHOOK_BACKOFF_SECONDS="1")
    team = team_for_key(api.services.db, api.key)
    secret = webhook_secret(api.services.db, api.services.cipher, team).reveal()
    with socket.socket() as silent, receiver(secret, [503]) as (hook, url):
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        slow = [bulk_row(f"slow{i}@example.test", smtpHost="127.0.0.1",
                         smtpPort=silent.getsockname()[1], smtpEncryption="none",
                         smtpOnly=True) for i in range(16)]
        rows = [mailbox(mail_server, "alice@example.test", USERS["alice@example.test"]),
                mailbox(mail_server, "dave@example.test", "wrong-password"),
                bulk_row("=cmd|' /C calc'!A0", smtpPassword="invalid-row-pw"), *slow]
        with celery_process("worker", env, tmp_path) as worker:
            response = api.client.post(f"/v1/email-accounts/connect?callbackUrl={url}",
                                       json=rows, headers={"x-api-key": api.key})
            assert response.status_code == 200, response.json
            request_id = response.json["payload"]["requestId"]
            wait_for(lambda: api.status(request_id)["processed"] >= 4, 60, "a slow row")
            cancel = api.client.post(f"/v1/email-accounts/connect/{request_id}/cancel",
                                     headers={"x-api-key": api.key})
            assert cancel.status_code == 202, cancel.json
            status = api.wait(request_id, timeout=60, diagnostics=worker.tail)
            delivered = wait_for(
                lambda: (api.status(request_id)["webhook"] or {}).get("state") == "delivered"
                and api.status(request_id), 30, "the webhook")

    assert (status["status"], status["isCompleted"]) == ("cancelled", True)
    assert status["processed"] == status["total"] == 19
    assert status["cancelled"] >= 8
    assert status["succeeded"] + status["failed"] + status["invalid"] + status["cancelled"] == 19
    report = api.report(status)
    assert [int(r["row"]) for r in report] == list(range(1, 20))
    assert sum(r["status"] == "cancelled" for r in report) == status["cancelled"]
    assert report[0]["status"] == "connected", report[0]
    assert report[1]["status"] == "failed", report[1]

    failed = download(status["failedRowsURL"])
    expected = [r["email"] for r in report if r["status"] in ("failed", "invalid")]
    assert [r["smtpEmailAddress"] for r in failed] == [
        "'" + e if e.startswith("=") else e for e in expected]
    assert failed[0]["errorCode"] == "auth_failed" and failed[0]["smtpPassword"] == ""
    assert "'=cmd" in failed[1]["smtpEmailAddress"]

    assert hook.valid == [True, True], "first answer 503, then delivered on the retry"
    body = hook.received[-1]["payload"]
    assert (body["requestId"], body["status"], body["isCompleted"]) == (
        request_id, "cancelled", True)
    assert delivered["webhook"]["attempts"] == 2


def test_retry_retests_failed_rows_with_the_stored_credentials(api, env, tmp_path, mail_server):
    rows = [mailbox(mail_server, "alice@example.test", USERS["alice@example.test"]),
            mailbox(mail_server, "dave@example.test", "wrong-password")]
    with celery_process("worker", env, tmp_path) as worker:
        first = api.wait(api.submit(rows), timeout=120, diagnostics=worker.tail)
        dave = next(r for r in api.report(first) if r["status"] == "failed")
        response = api.client.post(
            f"/v1/email-accounts/connect/{first['requestId']}/retry?codes=auth_failed",
            headers={"x-api-key": api.key})
        assert response.status_code == 200, response.json
        retry_id = response.json["payload"]["requestId"]
        status = api.wait(retry_id, timeout=60, diagnostics=worker.tail)
    assert (status["kind"], status["retryOf"], status["total"]) == (
        "retry", first["requestId"], 1)
    (row,) = api.report(status)
    assert (row["email"], row["accountId"], row["status"], row["smtpErrorCode"]) == (
        "dave@example.test", dave["accountId"], "failed", "auth_failed"), (
        "the stored (wrong) password was tested again, without anyone sending it")
