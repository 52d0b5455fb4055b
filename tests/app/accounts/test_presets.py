import pytest

from app.accounts.presets import PRESETS, SMTP_ONLY_PROVIDERS
from app.accounts.providers import PROVIDERS
from app.importing.rows import AccountInput, validate_row
from app.probe.model import Encryption
from tests.factories import bulk_row

SSL, STARTTLS = Encryption.SSL, Encryption.STARTTLS
MAILBOXES = {
    "gmail": (("smtp.gmail.com", 465, SSL), ("imap.gmail.com", 993, SSL)),
    "gsuite": (("smtp.gmail.com", 465, SSL), ("imap.gmail.com", 993, SSL)),
    "microsoft": (("smtp.office365.com", 587, STARTTLS), ("outlook.office365.com", 993, SSL)),
    "o365": (("smtp.office365.com", 587, STARTTLS), ("outlook.office365.com", 993, SSL)),
    "outlook": (("smtp.office365.com", 587, STARTTLS), ("outlook.office365.com", 993, SSL)),
    "yahoo": (("smtp.mail.yahoo.com", 465, SSL), ("imap.mail.yahoo.com", 993, SSL)),
    "zoho": (("smtp.zoho.com", 465, SSL), ("imap.zoho.com", 993, SSL)),
    "yandex": (("smtp.yandex.com", 465, SSL), ("imap.yandex.com", 993, SSL)),
    "godaddy": (("smtpout.secureserver.net", 465, SSL), ("imap.secureserver.net", 993, SSL)),
    "icloud": (("smtp.mail.me.com", 587, STARTTLS), ("imap.mail.me.com", 993, SSL)),
    "aol": (("smtp.aol.com", 465, SSL), ("imap.aol.com", 993, SSL)),
}
RELAYS = {
    "sendgrid": ("smtp.sendgrid.net", 587, STARTTLS),
    "mailgun": ("smtp.mailgun.org", 587, STARTTLS),
    "ses": ("email-smtp.us-east-1.amazonaws.com", 587, STARTTLS),
}
SERVER_FIELDS = ("smtpHost", "smtpPort", "smtpEncryption", "imapHost", "imapPort",
                 "imapEncryption")


def row_without_servers(provider: str, **overrides) -> dict:
    return bulk_row(emailServiceProvider=provider,
                    **{**dict.fromkeys(SERVER_FIELDS), **overrides})


def accepted(raw: dict) -> AccountInput:
    result = validate_row(raw)
    assert isinstance(result, AccountInput), result
    return result


def server(endpoint) -> tuple[str, int, Encryption]:
    return endpoint.host, endpoint.port, endpoint.encryption


def test_presets_are_known_providers_and_cover_the_listed_ones():
    assert set(PRESETS) <= PROVIDERS
    assert set(PRESETS) == set(MAILBOXES) | set(RELAYS)
    assert SMTP_ONLY_PROVIDERS == set(RELAYS)


@pytest.mark.parametrize("provider", sorted(MAILBOXES))
def test_mailbox_preset_fills_both_protocols(provider):
    result = accepted(row_without_servers(provider))
    assert (server(result.smtp), server(result.imap)) == MAILBOXES[provider]
    assert result.filled == SERVER_FIELDS
    assert result.settings()["filled"] == list(SERVER_FIELDS)
    assert result.settings()["smtp"]["host"] == MAILBOXES[provider][0][0]


@pytest.mark.parametrize("provider", sorted(RELAYS))
def test_relay_preset_fills_smtp_only(provider):
    result = accepted(row_without_servers(provider))
    assert server(result.smtp) == RELAYS[provider]
    assert result.imap is None
    assert result.filled == ("smtpHost", "smtpPort", "smtpEncryption")


def test_blank_csv_cells_are_filled_too():
    raw = {**bulk_row(emailServiceProvider="gmail"), **dict.fromkeys(SERVER_FIELDS, " ")}
    result = accepted(raw)
    assert server(result.smtp) == MAILBOXES["gmail"][0]
    assert result.filled == SERVER_FIELDS


def test_row_values_win_and_only_the_gaps_are_listed():
    result = accepted(row_without_servers("gmail", smtpHost="relay.example.com", imapPort=143,
                                          imapEncryption="starttls"))
    assert server(result.smtp) == ("relay.example.com", 465, SSL)
    assert server(result.imap) == ("imap.gmail.com", 143, STARTTLS)
    assert result.filled == ("smtpPort", "smtpEncryption", "imapHost")


@pytest.mark.parametrize(("given", "expected"), [
    ({"smtpPort": 587}, (587, STARTTLS)),
    ({"smtpEncryption": "tls"}, (587, STARTTLS)),
    ({"smtpPort": 465}, (465, SSL)),
])
def test_half_a_port_pair_is_completed_from_the_row_not_the_preset(given, expected):
    # Gmail's preset is 465/ssl; taking its encryption for a row's 587 would break the login.
    result = accepted(row_without_servers("gmail", **given))
    assert (result.smtp.port, result.smtp.encryption) == expected
    assert result.filled == ("smtpHost", "imapHost", "imapPort", "imapEncryption")


def test_full_row_fills_nothing():
    result = accepted(bulk_row(emailServiceProvider="gmail"))
    assert result.smtp.host == "smtp.example.com"
    assert result.filled == () and result.settings()["filled"] == []


@pytest.mark.parametrize("provider", ["other", "custom", "smtp"])
def test_providers_without_a_preset_still_need_a_host(provider):
    result = validate_row(row_without_servers(provider))
    assert {e.field: e.message for e in result} == {
        "smtpHost": "is required",
        "imapHost": "is required (unless smtpOnly is true)",
        "smtpPort": "is required",
        "imapPort": "is required",
    }


def test_smtp_only_flag_skips_the_imap_preset():
    result = accepted(row_without_servers("zoho", smtpOnly="true"))
    assert result.imap is None
    assert result.filled == ("smtpHost", "smtpPort", "smtpEncryption")
