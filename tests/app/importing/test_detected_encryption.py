"""Rows without an encryption on a port that does not say: detected by the probe against real
servers (Dovecot, on its random high ports), saved on the account, listed in filledIn, and
reused by every later test of the account."""

from __future__ import annotations

import csv
import io

import pytest
import requests
from sqlalchemy import select

from app.accounts.management import connect_account, retest_account, update_account
from app.accounts.slots import HostSlots
from app.importing.rows import AccountInput, validate_row
from app.jobs.finish import finish_job
from app.jobs.hostgate import OpenGate
from app.jobs.intake import submit_job, submit_reconnect
from app.jobs.runner import RetryPolicy, RowProcessor, start_job
from app.jobs.status import job_view
from app.models import EmailAccount
from app.probe import Encryption, Prober
from app.teams import create_api_key, team_for_key
from tests.conftest import USERS
from tests.factories import bulk_row

ALICE = "alice@example.test"
OPEN = HostSlots(OpenGate(), 1)


class Recording:
    """A real Prober that remembers the endpoints it was asked to test."""

    def __init__(self, prober: Prober) -> None:
        self.prober = prober
        self.calls: list[tuple] = []

    def probe_sync(self, smtp, imap):
        self.calls.append((smtp, imap))
        return self.prober.probe_sync(smtp, imap)


@pytest.fixture
def prober(settings) -> Recording:
    return Recording(Prober(settings.probe_settings()))


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def undeclared(server, email: str = ALICE, **overrides) -> dict:
    """A row for a Dovecot mailbox that names ports but no encryption."""
    if server.submission_port is None:
        pytest.fail("this Dovecot serves no submission; run with Dovecot installed")
    fields = {"emailServiceProvider": "custom", "smtpPassword": USERS[email],
              "imapPassword": USERS[email], "smtpHost": "localhost",
              "smtpPort": server.submission_port, "smtpEncryption": None,
              "imapHost": "localhost", "imapPort": server.imaps_port, "imapEncryption": None}
    return bulk_row(email, **{**fields, **overrides})


def run_job(services, prober, team_id: int, job_id: str) -> list[dict[str, str]]:
    """Test the job's rows with the real prober; its report's lines."""
    rows = RowProcessor(db=services.db, clock=services.clock, cipher=services.cipher,
                        prober=prober, gate=OpenGate(), policy=RetryPolicy(attempts=1),
                        lease_seconds=60)
    for row_id in start_job(services.db, services.clock, job_id):
        rows.process(row_id)
    assert finish_job(services.db, services.clock, services.store, job_id)
    view = job_view(services.db, team_id, job_id)
    url = services.store.download_url(view.report_key, 60)
    return list(csv.DictReader(io.StringIO(requests.get(url, timeout=10).text)))


def stored(services, email: str = ALICE) -> EmailAccount:
    with services.db.reading() as session:
        return session.scalar(select(EmailAccount).where(EmailAccount.email == email))


def test_undeclared_rows_are_detected_saved_and_listed(services, team_id, prober, mail_server):
    job = submit_job(services.db, services.cipher, services.clock, team_id,
                     [undeclared(mail_server)], policy=services.settings.host_policy)
    report = run_job(services, prober, team_id, job.job_id)
    assert [r["status"] for r in report] == ["connected"], report
    assert report[0]["filledIn"] == ("smtpEncryption=starttls (detected), "
                                     "imapEncryption=ssl (detected)")
    (smtp, imap), = prober.calls
    assert smtp.encryption is imap.encryption is Encryption.AUTO
    account = stored(services)
    assert (account.smtp_encryption, account.imap_encryption) == ("starttls", "ssl")

    # A re-test of the stored account uses the saved modes: nothing is detected again.
    retest = submit_reconnect(services.db, services.clock, team_id, [account.id])
    report = run_job(services, prober, team_id, retest.job_id)
    assert [r["status"] for r in report] == ["connected"]
    smtp, imap = prober.calls[-1]
    assert (smtp.encryption, imap.encryption) == (Encryption.STARTTLS, Encryption.SSL)


def test_nothing_found_keeps_auto_and_a_later_test_saves_the_mode(services, team_id, prober,
                                                                   mail_server):
    # The submission port given as IMAP's: the TLS try meets an SMTP greeting in plaintext,
    # STARTTLS is then tried in IMAP, and the verdict names the mix-up; nothing detected.
    row = undeclared(mail_server, imapPort=mail_server.submission_port)
    account = validate_row(row, policy=services.settings.host_policy)
    assert isinstance(account, AccountInput)
    result = connect_account(services.db, services.cipher, services.clock, prober, team_id,
                             account, slots=OPEN)
    assert result.probe.smtp.ok and not result.probe.imap.ok
    assert result.probe.imap.detected is None
    assert (stored(services).smtp_encryption, stored(services).imap_encryption) == (
        "starttls", "auto")

    # Fixed with a PATCH of the port alone: its test detects IMAP's mode and stores it.
    changed = update_account(services.db, services.cipher, services.clock, prober, team_id,
                             result.account_id, {"imapPort": mail_server.imap_port},
                             slots=OPEN, policy=services.settings.host_policy)
    assert changed.tested.probe.verified
    assert (changed.account.smtp_encryption, changed.account.imap_encryption) == (
        "starttls", "starttls")

    # A later re-test uses it.
    retested = retest_account(services.db, services.cipher, services.clock, prober, team_id,
                              result.account_id, slots=OPEN)
    assert retested.probe.verified
    assert prober.calls[-1][1].encryption is Encryption.STARTTLS


def test_single_connect_lists_what_it_detected(client, api_key, services, mail_server):
    services.prober = Prober(services.settings.probe_settings())
    body = {"emailServiceProvider": "custom", "payload": {
        "smtp": {"emailAddress": ALICE, "password": USERS[ALICE], "host": "localhost",
                 "port": mail_server.submissions_port},
        "imap": {"emailAddress": ALICE, "password": USERS[ALICE], "host": "localhost",
                 "port": mail_server.imap_port}}}
    response = client.post("/v1/email-accounts/smtp-imap/connect", json=body,
                           headers={"x-api-key": api_key})
    assert response.status_code == 200, response.json
    payload = response.json["payload"]
    assert payload["status"] == 1, payload
    assert payload["filledIn"] == ["smtpEncryption=ssl (detected)",
                                         "imapEncryption=starttls (detected)"]
    account = stored(services)
    assert account.team_id == team_for_key(services.db, api_key)
    assert (account.smtp_encryption, account.imap_encryption) == ("ssl", "starttls")


def test_smartlead_row_without_encryption_columns_connects(client, api_key, services,
                                                           prober, mail_server):
    # Smartlead's shape (see test_seeds.py): one login, ports, no encryption columns.
    body = {"from_name": "Alice A", "from_email": ALICE, "user_name": ALICE,
            "password": USERS[ALICE], "smtp_host": "localhost",
            "smtp_port": mail_server.submission_port, "imap_host": "localhost",
            "imap_port": mail_server.imaps_port, "type": "SMTP", "warmup_enabled": True}
    response = client.post("/v1/email-accounts/connect", json=[body],
                           headers={"x-api-key": api_key})
    assert response.status_code == 200, response.json
    report = run_job(services, prober, team_for_key(services.db, api_key),
                     response.json["payload"]["requestId"])
    assert [(r["status"], r["smtpResult"], r["imapResult"]) for r in report] == [
        ("connected", "ok", "ok")], report
    assert "smtpEncryption=starttls (detected)" in report[0]["filledIn"]
    assert "imapEncryption=ssl (detected)" in report[0]["filledIn"]
