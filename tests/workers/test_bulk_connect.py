"""End to end: POST a mixed batch, a real Celery worker tests every mailbox against real
servers, the report lands in S3 and every account is saved."""

import datetime as dt
import json

import pytest
from sqlalchemy import select

from app.devserver import free_port
from app.models import EmailAccount
from tests.conftest import USERS
from tests.factories import bulk_row
from tests.servers.worker import celery_process

pytestmark = pytest.mark.integration


def account(email, smtp_port, smtp_enc, imap_port, imap_enc, password=None, host="localhost",
            smtp_host=None, **extra):
    password = password or USERS.get(email, "whatever")
    return bulk_row(email, smtpPassword=password, imapPassword=password,
                    smtpHost=smtp_host or host, smtpPort=smtp_port, smtpEncryption=smtp_enc,
                    imapHost=host, imapPort=imap_port, imapEncryption=imap_enc, **extra)


def test_mixed_batch_end_to_end(api, env, tmp_path, mail_server, smtp_server,
                                untrusted_smtp_server):
    m, s = mail_server, smtp_server
    closed_port = free_port()
    rows = [
        account("alice@example.test", m.submissions_port, "ssl", m.imaps_port, "ssl"),
        account("bob@example.test", m.submission_port, "starttls", m.imap_port, "tls"),
        account("carol@example.test", s.plain_port, "none", m.imap_port, "starttls"),
        account("dave@example.test", m.submission_port, "starttls", m.imaps_port, "ssl",
                password="wrong-password"),
        account("erin@example.test", closed_port, "ssl", m.imaps_port, "ssl"),
        account("frank@example.test", 465, "ssl", 993, "ssl", host="mail.nosuch.invalid"),
        account("gina@example.test", untrusted_smtp_server.ssl_port, "ssl", m.imaps_port, "ssl",
                password=USERS["alice@example.test"], imapUserName="alice@example.test"),
        bulk_row("not-an-email", smtpPort=99999),
        account("alice@example.test", m.submissions_port, "ssl", m.imaps_port, "ssl"),
        bulk_row("grace@example.test", emailServiceProvider="SendGrid",
                 smtpPassword=USERS["grace@example.test"], smtpHost="localhost",
                 smtpPort=s.starttls_port, smtpEncryption="starttls", imapHost=None,
                 imapPort=None, imapEncryption=None, imapPassword=None,
                 imapEmailAddress=None, imapUserName=None),
    ]
    env["WORKER_CONCURRENCY"] = "8"
    with celery_process("worker", env, tmp_path) as worker:
        request_id = api.submit(rows)
        status = api.wait(request_id, timeout=120, diagnostics=worker.tail)

    assert status["status"] == "completed"
    assert (status["total"], status["processed"], status["succeeded"], status["failed"],
            status["invalid"]) == (10, 10, 4, 4, 2)
    assert status["progress"] == 100.0
    for stamp in ("createdAt", "startedAt", "completedAt", "reportExpiresAt"):
        assert dt.datetime.fromisoformat(status[stamp])
    assert status["reportURL"].startswith(env["S3_ENDPOINT_URL"])

    report = api.report(status)
    assert [int(r["row"]) for r in report] == list(range(1, 11))
    by_row = {int(r["row"]): r for r in report}
    expected = {
        1: ("connected", "ok", "", "ok", ""),
        2: ("connected", "ok", "", "ok", ""),
        3: ("connected", "ok", "", "ok", ""),
        4: ("failed", "failed", "auth_failed", "failed", "auth_failed"),
        5: ("failed", "failed", "connection_refused", "ok", ""),
        6: ("failed", "failed", "dns_not_found", "failed", "dns_not_found"),
        7: ("failed", "failed", "tls_certificate_invalid", "ok", ""),
        8: ("invalid", "skipped", "", "skipped", ""),
        9: ("invalid", "skipped", "", "skipped", ""),
        10: ("connected", "ok", "", "skipped", ""),
    }
    for row_no, (state, smtp, smtp_code, imap, imap_code) in expected.items():
        r = by_row[row_no]
        got = (r["status"], r["smtpResult"], r["smtpErrorCode"], r["imapResult"],
               r["imapErrorCode"])
        assert got == (state, smtp, smtp_code, imap, imap_code), (row_no, r)
        if state == "failed":
            assert r["smtpError"] or r["imapError"]
        assert r["accountStatus"] == {"connected": "1", "failed": "0", "invalid": ""}[state]
    assert by_row[8]["errorCode"] == "invalid_fields"
    assert "smtpPort: must be between 1 and 65535" in by_row[8]["validationErrors"]
    assert by_row[9]["errorCode"] == "duplicate_in_request"

    raw = json.dumps(report)
    for password in [*USERS.values(), "wrong-password"]:
        assert password not in raw

    with api.services.db.transaction() as session:
        accounts = {a.email: a for a in session.scalars(select(EmailAccount))}
    assert sorted(accounts) == sorted(
        ["alice@example.test", "bob@example.test", "carol@example.test", "dave@example.test",
         "erin@example.test", "frank@example.test", "gina@example.test",
         "grace@example.test"])
    for row_no, r in by_row.items():
        if r["accountId"]:
            saved = accounts[r["email"]]
            assert str(saved.id) == r["accountId"]
            assert saved.status == int(r["accountStatus"])
            assert saved.smtp_error_code == (r["smtpErrorCode"] or None), row_no
    assert accounts["alice@example.test"].smtp_encryption == "ssl"
    assert accounts["bob@example.test"].imap_encryption == "starttls"
    for saved in accounts.values():
        assert all(p not in saved.credentials for p in USERS.values())


def test_an_account_deleted_while_its_import_is_queued_stays_deleted(api, env, tmp_path,
                                                                     mail_server):
    m, headers = mail_server, {"x-api-key": api.key}
    alice = account("alice@example.test", m.submissions_port, "ssl", m.imaps_port, "ssl")
    with celery_process("worker", env, tmp_path) as worker:
        seeded = api.wait(api.submit([alice]), timeout=120, diagnostics=worker.tail)
    [seed] = api.report(seeded)
    request_id = api.submit([alice])  # no worker now: the job waits in the broker
    url = f"/v1/email-accounts/{seed['accountId']}"
    assert api.client.delete(url, headers=headers).status_code == 200

    with celery_process("worker", env, tmp_path) as worker:
        status = api.wait(request_id, timeout=120, diagnostics=worker.tail)
    assert api.client.get("/v1/email-accounts", headers=headers).json["payload"]["total"] == 0, (
        "the import brought a deleted account back")
    assert (status["processed"], status["succeeded"], status["failed"]) == (1, 0, 1)
    [row] = api.report(status)
    assert (row["status"], row["errorCode"], row["accountId"], row["smtpResult"],
            row["imapResult"]) == ("failed", "account_deleted", "", "skipped", "skipped"), (
        "a deleted account's mailbox was logged into")
