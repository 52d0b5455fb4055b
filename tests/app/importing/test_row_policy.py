"""Rows naming a banned host or a port outside the allowed list are invalid, field by field."""

import pytest

from app.importing.rows import AccountInput, validate_row
from app.probe.policy import HostPolicy, parse_banned_hosts, parse_ports
from tests.factories import bulk_row

POLICY = HostPolicy(banned_hosts=parse_banned_hosts("banned.example, .gmail.com"),
                    allowed_ports=parse_ports("25,465,587,993,20000-29999"))


def errors_of(raw, policy=POLICY) -> dict[str, str]:
    result = validate_row(raw, policy=policy)
    assert isinstance(result, list), result
    return {e.field: e.message for e in result}


def test_banned_host_is_a_field_error_naming_it():
    errors = errors_of(bulk_row(smtpHost="banned.example"))
    assert errors == {"smtpHost": "banned.example is not allowed: this service refuses "
                                  "banned.example"}


def test_banned_suffix_covers_subdomains_on_either_protocol():
    errors = errors_of(bulk_row(smtpHost="SMTP.Banned.Example", imapHost="imap.banned.example"))
    assert set(errors) == {"smtpHost", "imapHost"}
    assert errors["imapHost"] == ("imap.banned.example is not allowed: this service refuses "
                                  "banned.example and its subdomains")


def test_a_host_filled_from_a_preset_is_checked_too():
    row = bulk_row(emailServiceProvider="gmail", smtpHost=None, smtpPort=None,
                   smtpEncryption=None, imapHost=None, imapPort=None, imapEncryption=None)
    errors = errors_of(row)
    assert "smtp.gmail.com is not allowed" in errors["smtpHost"]
    assert "imap.gmail.com is not allowed" in errors["imapHost"]


def test_disallowed_port_is_a_field_error_naming_it():
    errors = errors_of(bulk_row(smtpPort=2525, smtpEncryption="tls", imapPort=143,
                                imapEncryption="tls"))
    assert errors == {
        "smtpPort": "port 2525 is not allowed (this service connects to 25, 465, 587, 993, "
                    "20000-29999)",
        "imapPort": "port 143 is not allowed (this service connects to 25, 465, 587, 993, "
                    "20000-29999)",
    }


def test_a_port_inferred_from_the_encryption_is_checked_too():
    assert set(errors_of(bulk_row(imapPort=None, imapEncryption="tls"))) == {"imapPort"}


def test_ports_inside_a_range_and_other_hosts_pass():
    result = validate_row(bulk_row(smtpHost="smtp.example.com", smtpPort=25000,
                                   smtpEncryption="ssl"), policy=POLICY)
    assert isinstance(result, AccountInput)
    assert result.smtp.port == 25000


def test_smtp_only_rows_ignore_the_imap_side():
    result = validate_row(bulk_row(smtpOnly=True, imapHost="banned.example", imapPort=1),
                          policy=POLICY)
    assert isinstance(result, AccountInput)


@pytest.mark.parametrize("port", [25, 465, 587, 2525, 143, 993])
def test_without_a_policy_the_production_default_applies(port):
    assert isinstance(validate_row(bulk_row(imapPort=port, imapEncryption="ssl")), AccountInput)
    assert set(errors_of(bulk_row(imapPort=8993, imapEncryption="ssl"), policy=None)) == {
        "imapPort"}


def test_policy_errors_come_with_the_other_field_errors():
    errors = errors_of(bulk_row(smtpHost="banned.example", smtpPassword=None))
    assert set(errors) == {"smtpHost", "smtpPassword"}
