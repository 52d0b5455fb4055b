"""Each vendor's own example request, from /work/shared/seeds, is accepted as a row.

The bodies are copied into this file so the tests do not depend on the seed documents' text.
"""

import pytest
from sqlalchemy import select

from app.importing.aliases import canonical_record, flatten_single_connect
from app.importing.rows import AccountInput, validate_row
from app.models import ConnectJobRow
from app.probe.model import Encryption
from app.probe.policy import OPEN_POLICY
from tests.app.dialects.seeds import LEMLIST_SEED, SMARTLEAD_REQUEST


@pytest.fixture
def http(client, api_key, services):
    """Each body is also sent unchanged to the bulk endpoint, as a one-row import."""

    def post(body: dict) -> None:
        response = client.post("/v1/email-accounts/connect", json=[body],
                               headers={"x-api-key": api_key})
        assert response.status_code == 200, response.json
        with services.db.reading() as session:
            state = session.scalar(select(ConnectJobRow.state).where(
                ConnectJobRow.job_id == response.json["payload"]["requestId"]))
        assert state == "pending", "the row was accepted for testing"

    return post


def accepted(body: dict, http=None) -> tuple[AccountInput, list[str]]:
    record, unrecognised = canonical_record(body)
    # As the test environment does: a published example's port (mailreach's 1) is kept, and
    # the production port list has its own tests (test_row_policy.py).
    result = validate_row(record, policy=OPEN_POLICY)
    assert isinstance(result, AccountInput), result
    if http is not None:
        http(body)
    return result, unrecognised


def test_000_saleshandy_single_connect(http):
    # The scraped page shows every address as "[email protected]" (Cloudflare's address
    # obfuscation); a real address stands in for it.
    body = {
        "emailServiceProvider": "zoho",
        "fromName": "Sarah Chen",
        "fromFirstName": "Sarah",
        "fromLastName": "Chen",
        "payload": {
            "smtp": {
                "emailAddress": "sarah.chen@example.com",
                "password": "AppPassword123",
                "host": "smtp.zoho.com",
                "port": 587,
                "encryption": "TLS",
                "userName": "sarah.chen@example.com",
            },
            "imap": {
                "emailAddress": "sarah.chen@example.com",
                "password": "AppPassword123",
                "host": "imap.zoho.com",
                "port": 993,
                "encryption": "SSL",
            },
        },
    }
    account, unrecognised = accepted(flatten_single_connect(body))
    http(body)  # the nested single-connect shape, as sent
    assert unrecognised == []
    assert (account.provider, account.from_name) == ("zoho", "Sarah Chen")
    assert (account.smtp.host, account.smtp.port, account.smtp.encryption) == (
        "smtp.zoho.com", 587, Encryption.STARTTLS)
    assert (account.imap.host, account.imap.port, account.imap.encryption) == (
        "imap.zoho.com", 993, Encryption.SSL)
    assert account.imap.password.reveal() == "AppPassword123"


def test_001_saleshandy_bulk_connect(http):
    # As in 000, "[email protected]" in the page is replaced by a real address.
    body = {
        "emailServiceProvider": "gsuite",
        "fromFirstName": "John",
        "fromLastName": "Snow",
        "smtpEmailAddress": "john.snow@example.com",
        "smtpUserName": "john.snow@example.com",
        "smtpPassword": "smtp-password",
        "smtpHost": "smtp.gmail.com",
        "smtpPort": 465,
        "smtpEncryption": "ssl",
        "imapEmailAddress": "john.snow@example.com",
        "imapUserName": "john.snow@example.com",
        "imapPassword": "imap-password",
        "imapHost": "imap.gmail.com",
        "imapPort": 993,
        "imapEncryption": "ssl",
    }
    account, unrecognised = accepted(body, http)
    assert unrecognised == []
    assert (account.email, account.provider, account.from_name) == (
        "john.snow@example.com", "gsuite", "John Snow")
    assert (account.smtp.password.reveal(), account.imap.password.reveal()) == (
        "smtp-password", "imap-password")


# The document's three "Configuration Examples": Gmail, Outlook, custom SMTP.
SMARTLEAD_EXAMPLES = [
    {
        "from_name": "Your Name",
        "from_email": "your.email@gmail.com",
        "user_name": "your.email@gmail.com",
        "password": "your_app_specific_password",
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "type": "GMAIL",
        "warmup_enabled": True,
    },
    {
        "from_name": "Your Name",
        "from_email": "your.email@outlook.com",
        "user_name": "your.email@outlook.com",
        "password": "your_password",
        "smtp_host": "smtp.office365.com",
        "smtp_port": 587,
        "imap_host": "outlook.office365.com",
        "imap_port": 993,
        "type": "OUTLOOK",
        "warmup_enabled": True,
    },
    {
        "from_name": "Your Name",
        "from_email": "you@yourdomain.com",
        "user_name": "you@yourdomain.com",
        "password": "your_password",
        "smtp_host": "smtp.yourdomain.com",
        "smtp_port": 587,
        "imap_host": "imap.yourdomain.com",
        "imap_port": 993,
        "type": "SMTP",
        "warmup_enabled": False,
    },
]


@pytest.mark.parametrize("body", [SMARTLEAD_REQUEST, *SMARTLEAD_EXAMPLES])
def test_002_smartlead_save(body, http):
    account, unrecognised = accepted(body, http)
    assert unrecognised == []
    assert account.provider == body["type"].lower()
    assert account.from_name == body["from_name"]
    for endpoint in (account.smtp, account.imap):
        assert endpoint.username == body["user_name"]
        assert endpoint.password.reveal() == body["password"]
    assert account.smtp.encryption is Encryption.STARTTLS
    assert account.imap.encryption is Encryption.SSL
    if body is SMARTLEAD_REQUEST:
        assert account.sending == {"warmupEnabled": True, "warmupPerDay": 20,
                                   "warmupDailyRampup": 2, "maxEmailPerDay": 50,
                                   "minDelayMinutes": 5}


def test_003_mailreach_imap_auth(http):
    # The document's example leaves every text field empty; the empty strings are replaced by
    # realistic values (hosts, addresses, passwords, names). All else is as published.
    body = {
        "email": "john@acme.com",
        "password": "account-password",
        "first_name": "John",
        "last_name": "Doe",
        "provider": "gmail",
        "id": 1,
        "imap_server": "imap.gmail.com",
        "imap_server_port": 1,
        "imap_server_username": "john@acme.com",
        "imap_server_password": "imap-password",
        "smtp_server": "smtp.gmail.com",
        "smtp_server_port": 1,
        "smtp_server_username": "john@acme.com",
        "smtp_server_password": "smtp-password",
        "smtp_server_auth_type": "plain",
        "smtp_server_starttls": True,
        "smtp_only": True,
        "imap_issue": True,
        "spamchecker_only": True,
        "test": True,
    }
    account, unrecognised = accepted(body, http)
    assert unrecognised == ["id", "smtp_server_auth_type", "imap_issue", "spamchecker_only",
                            "test"]
    assert (account.email, account.provider, account.from_name) == (
        "john@acme.com", "gmail", "John Doe")
    assert (account.smtp.host, account.smtp.port, account.smtp.encryption) == (
        "smtp.gmail.com", 1, Encryption.STARTTLS)
    assert account.smtp.password.reveal() == "smtp-password"
    assert account.imap is None  # smtp_only


def test_004_lemlist_email_accounts(http):
    account, unrecognised = accepted(dict(LEMLIST_SEED), http)
    assert unrecognised == []
    assert (account.email, account.from_name) == ("john@company.com", "John Doe")
    assert (account.smtp.host, account.smtp.port, account.smtp.encryption) == (
        "smtp.company.com", 587, Encryption.STARTTLS)
    assert (account.imap.host, account.imap.port, account.imap.encryption) == (
        "imap.company.com", 993, Encryption.SSL)
    assert account.imap.username == "john@company.com"
