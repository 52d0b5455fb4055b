import pytest

from app.importing.aliases import (
    ALIASES,
    EITHER_PROTOCOL,
    ENCRYPTION_FLAGS,
    alias_table_markdown,
    canonical_record,
    column_key,
    flatten_single_connect,
)
from app.importing.rows import KNOWN_FIELDS, AccountInput, validate_row
from app.probe.model import Encryption
from tests.factories import bulk_row


def canonical(record: dict) -> dict:
    result, unrecognised = canonical_record(record)
    assert unrecognised == []
    return result


def without(row: dict, *names: str) -> dict:
    return {k: v for k, v in row.items() if k not in names}


# The table itself.

def test_every_validated_field_and_helper_has_a_row():
    assert set(ALIASES) == KNOWN_FIELDS | set(EITHER_PROTOCOL)


def test_no_name_means_two_fields():
    owner: dict[str, str] = {}
    for field, aliases in ALIASES.items():
        for name in (field, *aliases):
            assert owner.setdefault(column_key(name), field) == field, name


def test_encryption_flags_are_aliases_of_an_encryption_field():
    for name in ENCRYPTION_FLAGS:
        assert name in ALIASES["smtpEncryption"] + ALIASES["imapEncryption"]


def test_markdown_table_has_one_row_per_field():
    lines = alias_table_markdown().splitlines()
    assert lines[:2] == ["| field | also accepted as |", "|---|---|"]
    assert [line.split("`")[1] for line in lines[2:]] == list(ALIASES)
    assert "| `smtpHost` | `smtp_host`, `smtp_server` |" in lines
    assert ("| `smtpEncryption` | `smtp_secure` (true: ssl), `smtp_server_starttls` "
            "(true: starttls) |") in lines


# Matching names.

@pytest.mark.parametrize("column", ["smtpHost", "SMTP Host", "smtp_host", "SMTP-HOST",
                                    " smtp.host ", "SmtpHOST"])
def test_names_match_whatever_the_case_and_punctuation(column):
    assert canonical({column: "smtp.example.com"}) == {"smtpHost": "smtp.example.com"}


@pytest.mark.parametrize("column", ["Sender Email", "FROM-EMAIL", "Email", "e-mail"])
def test_aliases_match_whatever_the_case_and_punctuation(column):
    assert canonical({column: "a@b.co"}) == {"smtpEmailAddress": "a@b.co"}


def test_unknown_columns_are_listed_in_order_and_dropped():
    record, unrecognised = canonical_record(
        {"Notes": "vip", "smtpHost": "h", "id": 7, "": "x", "smtp_server_auth_type": "plain"})
    assert record == {"smtpHost": "h"}
    assert unrecognised == ["Notes", "id", "", "smtp_server_auth_type"]


# Each vendor's column set.

def test_smartlead_columns():
    assert canonical({
        "from_name": "John Doe", "from_email": "john@example.com", "user_name": "john",
        "password": "pw", "smtp_host": "smtp.example.com", "smtp_port": 587,
        "imap_host": "imap.example.com", "imap_port": 993, "imap_user_name": "john-imap",
        "imap_password": "imap-pw", "max_email_per_day": 50, "warmup_enabled": True,
        "total_warmup_per_day": 20, "daily_rampup": 2, "reply_rate_percentage": 30,
        "time_to_wait_in_mins": 5, "different_reply_to_address": "replies@example.com",
        "bcc": "log@example.com", "signature": "<b>John</b>", "type": "SMTP",
        "is_suspended": False,
    }) == {
        "fromName": "John Doe", "smtpEmailAddress": "john@example.com", "smtpUserName": "john",
        "smtpPassword": "pw", "smtpHost": "smtp.example.com", "smtpPort": 587,
        "imapHost": "imap.example.com", "imapPort": 993, "imapUserName": "john-imap",
        "imapPassword": "imap-pw", "maxEmailPerDay": 50, "warmupEnabled": True,
        "warmupPerDay": 20, "warmupDailyRampup": 2, "warmupReplyRate": 30,
        "minDelayMinutes": 5, "replyTo": "replies@example.com", "bcc": "log@example.com",
        "signature": "<b>John</b>", "emailServiceProvider": "SMTP", "suspended": False,
    }


def test_lemlist_columns():
    assert canonical({
        "sender_name": "John Doe", "sender_email": "john@company.com",
        "smtp_host": "smtp.company.com", "smtp_port": 465, "smtp_login": "john",
        "smtp_password": "s-pw", "smtp_secure": True, "imap_host": "imap.company.com",
        "imap_port": 993, "imap_login": "john-imap", "imap_password": "i-pw",
        "imap_secure": True,
    }) == {
        "fromName": "John Doe", "smtpEmailAddress": "john@company.com",
        "smtpHost": "smtp.company.com", "smtpPort": 465, "smtpUserName": "john",
        "smtpPassword": "s-pw", "smtpEncryption": "ssl", "imapHost": "imap.company.com",
        "imapPort": 993, "imapUserName": "john-imap", "imapPassword": "i-pw",
        "imapEncryption": "ssl",
    }


def test_mailreach_columns():
    assert canonical({
        "email": "john@acme.com", "first_name": "John", "last_name": "Doe",
        "provider": "custom", "password": "pw", "imap_server": "imap.acme.com",
        "imap_server_port": 993, "imap_server_username": "john-imap",
        "imap_server_password": "imap-pw", "smtp_server": "smtp.acme.com",
        "smtp_server_port": 587, "smtp_server_username": "john-smtp",
        "smtp_server_password": "smtp-pw", "smtp_server_starttls": True, "smtp_only": False,
    }) == {
        "smtpEmailAddress": "john@acme.com", "fromFirstName": "John", "fromLastName": "Doe",
        "emailServiceProvider": "custom", "imapHost": "imap.acme.com", "imapPort": 993,
        "imapUserName": "john-imap", "imapPassword": "imap-pw", "smtpHost": "smtp.acme.com",
        "smtpPort": 587, "smtpUserName": "john-smtp", "smtpPassword": "smtp-pw",
        "smtpEncryption": "starttls", "smtpOnly": False,
    }


def test_instantly_export_columns():
    assert canonical({
        "email": "john@acme.com", "first_name": "John", "last_name": "Doe",
        "smtp_username": "john-smtp", "smtp_password": "s-pw", "smtp_host": "smtp.acme.com",
        "smtp_port": "587", "imap_username": "john-imap", "imap_password": "i-pw",
        "imap_host": "imap.acme.com", "imap_port": "993", "daily_limit": "40",
        "warmup_enabled": "TRUE",
    }) == {
        "smtpEmailAddress": "john@acme.com", "fromFirstName": "John", "fromLastName": "Doe",
        "smtpUserName": "john-smtp", "smtpPassword": "s-pw", "smtpHost": "smtp.acme.com",
        "smtpPort": "587", "imapUserName": "john-imap", "imapPassword": "i-pw",
        "imapHost": "imap.acme.com", "imapPort": "993", "maxEmailPerDay": "40",
        "warmupEnabled": "TRUE",
    }


def test_saleshandy_columns_pass_through_unchanged():
    row = bulk_row(fromName="Sarah C.", smtpOnly=False, tags="a,b")
    assert canonical(row) == row


# One password or username for both protocols.

def test_single_password_and_username_fill_both_protocols():
    assert canonical({"password": "pw", "user_name": "john"}) == {
        "smtpPassword": "pw", "imapPassword": "pw", "smtpUserName": "john",
        "imapUserName": "john"}


def test_specific_password_wins_over_single_password():
    assert canonical({"password": "both", "smtp_password": "smtp-only"}) == {
        "smtpPassword": "smtp-only", "imapPassword": "both"}
    assert canonical({"imap_server_password": "imap", "password": "both",
                      "smtp_server_password": "smtp"}) == {
        "smtpPassword": "smtp", "imapPassword": "imap"}


def test_single_password_fills_a_blank_specific_one():
    assert canonical({"smtpPassword": " ", "password": "pw", "imapPassword": ""}) == {
        "smtpPassword": "pw", "imapPassword": "pw"}


def test_blank_single_password_changes_nothing():
    assert canonical({"password": "", "userName": None, "smtpPassword": "pw"}) == {
        "smtpPassword": "pw"}


# Yes/no encryption columns.

@pytest.mark.parametrize("value", [True, 1, "true", "TRUE", " True ", "1", "yes", "Y"])
@pytest.mark.parametrize(("column", "field", "meaning"), [
    ("smtp_secure", "smtpEncryption", "ssl"),
    ("imapSecure", "imapEncryption", "ssl"),
    ("smtp_server_starttls", "smtpEncryption", "starttls"),
])
def test_true_flag_names_the_encryption(value, column, field, meaning):
    assert canonical({column: value}) == {field: meaning}


@pytest.mark.parametrize("value", [False, 0, "false", "FALSE", "0", "no", "N"])
@pytest.mark.parametrize("column", ["smtp_secure", "imap_secure", "smtp_server_starttls"])
def test_false_flag_leaves_the_encryption_to_the_port(value, column):
    assert canonical({column: value}) == {}


@pytest.mark.parametrize(("port", "encryption"), [(587, Encryption.STARTTLS),
                                                  (465, Encryption.SSL)])
def test_false_smtp_secure_is_inferred_from_the_port(port, encryption):
    row = without(bulk_row(smtpPort=port), "smtpEncryption")
    result = validate_row(canonical({**row, "smtp_secure": "false"}))
    assert result.smtp.encryption is encryption


def test_flag_column_holding_an_encryption_name_is_passed_on():
    assert canonical({"smtp_secure": "tls"}) == {"smtpEncryption": "tls"}
    errors = validate_row(canonical({**bulk_row(), "imap_secure": "maybe", "imapEncryption": ""}))
    assert [e.field for e in errors] == ["imapEncryption"]


def test_named_encryption_wins_over_a_flag():
    assert canonical({"smtp_secure": True, "smtpEncryption": "starttls"}) == {
        "smtpEncryption": "starttls"}


# Provider values.

@pytest.mark.parametrize(("column", "value", "provider"), [
    ("type", "GMAIL", "gmail"), ("type", "OUTLOOK", "outlook"), ("type", "SMTP", "smtp"),
    ("provider", "custom", "custom"), ("provider", "Gmail", "gmail"),
])
def test_vendor_provider_values_become_ours(column, value, provider):
    row = without(bulk_row(), "emailServiceProvider")
    result = validate_row(canonical({**row, column: value}))
    assert isinstance(result, AccountInput), result
    assert result.provider == provider


# Which column wins.

@pytest.mark.parametrize("record", [
    {"email": "alias@example.com", "smtpEmailAddress": "ours@example.com"},
    {"smtp_email_address": "ours@example.com", "email": "alias@example.com"},
])
def test_our_name_wins_over_an_alias_in_either_order(record):
    assert canonical(record) == {"smtpEmailAddress": "ours@example.com"}


def test_earlier_alias_in_the_table_wins():
    assert canonical({"email": "generic@example.com", "from_email": "from@example.com"}) == {
        "smtpEmailAddress": "from@example.com"}


@pytest.mark.parametrize("record", [
    {"smtpHost": "", "smtp_server": "smtp.example.com"},
    {"smtp_server": "smtp.example.com", "SMTP Host": "  "},
    {"smtp_server": "smtp.example.com", "smtpHost": None},
])
def test_blank_never_replaces_a_filled_value(record):
    assert canonical(record) == {"smtpHost": "smtp.example.com"}


def test_all_blank_keeps_the_field_so_validation_names_it():
    record = canonical({**without(bulk_row(emailServiceProvider="other"), "smtpHost"),
                        "smtp_server": "", "smtpHost": ""})
    assert record["smtpHost"] == ""
    assert [e.field for e in validate_row(record)] == ["smtpHost"]


def test_same_name_twice_keeps_the_first_filled():
    assert canonical({"SMTP Host": "first.example.com", "smtp_host": "second.example.com"}) == {
        "smtpHost": "first.example.com"}


# Saleshandy's single-connect body.

def test_flatten_single_connect():
    body = {"emailServiceProvider": "zoho", "fromName": "Sarah Chen",
            "payload": {"smtp": {"host": "smtp.zoho.com", "userName": "sarah", "port": 587},
                        "imap": {"emailAddress": "s@example.com", "encryption": "SSL"}}}
    assert flatten_single_connect(body) == {
        "emailServiceProvider": "zoho", "fromName": "Sarah Chen", "smtpHost": "smtp.zoho.com",
        "smtpUserName": "sarah", "smtpPort": 587, "imapEmailAddress": "s@example.com",
        "imapEncryption": "SSL"}


def test_flatten_keeps_other_payload_entries_so_they_are_reported():
    flat = flatten_single_connect({"payload": {"smtp": {"host": "h"}, "oauth": {"t": 1},
                                               "imap": "not an object"}})
    assert canonical_record(flat) == ({"smtpHost": "h"}, ["payload.oauth", "payload.imap"])


@pytest.mark.parametrize("body", [bulk_row(), {"payload": "text", "smtpHost": "h"}])
def test_flatten_leaves_a_body_without_a_payload_object_alone(body):
    assert flatten_single_connect(body) == body


def test_readme_alias_table_is_generated_from_the_mapping():
    from pathlib import Path

    from app.importing.aliases import alias_table_markdown

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("<!-- aliases:start -->")[1].split("<!-- aliases:end -->")[0]
    assert block.strip() == alias_table_markdown().strip()
