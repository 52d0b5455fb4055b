"""Vendor bodies to our record, and our errors back in the vendor's names (no network)."""

import base64

from app.dialects import lemlist, mailreach, smartlead
from app.dialects.mapping import Mapped, to_record, vendor_errors
from app.importing.rows import FieldError, validate_row
from tests.app.dialects.seeds import LEMLIST_SEED, MAILREACH_SEED, SMARTLEAD_SEED


def test_smartlead_seed_maps_onto_one_record_with_its_sending_settings():
    mapped = to_record(smartlead.DIALECT, SMARTLEAD_SEED)
    assert isinstance(mapped, Mapped) and mapped.ignored == []
    record = mapped.record
    assert record["smtpPassword"] == record["imapPassword"] == "your_app_password"
    assert record["smtpUserName"] == record["imapUserName"] == "john@example.com"
    assert record["emailServiceProvider"] == "gmail"
    checked = validate_row(record)
    assert checked.sending == {"warmupEnabled": True, "warmupPerDay": 20,
                               "warmupDailyRampup": 2, "maxEmailPerDay": 50,
                               "minDelayMinutes": 5}
    assert checked.smtp.port == 587 and checked.imap.port == 993


def test_a_protocols_own_login_beats_the_shared_one():
    body = {**SMARTLEAD_SEED, "imap_password": "imap-only", "imap_user_name": "imap@example.com"}
    record = to_record(smartlead.DIALECT, body).record
    assert (record["smtpPassword"], record["imapPassword"]) == ("your_app_password", "imap-only")
    assert record["imapUserName"] == "imap@example.com"
    assert record["smtpUserName"] == "john@example.com"


# The MailReach example leaves its text fields empty; the values are its answer's example's.
MAILREACH = {**MAILREACH_SEED, "email": "john@acme.com", "password": "pw", "first_name": "John",
             "last_name": "Doe", "smtp_server": "smtp.acme.com", "smtp_server_port": 587}


def test_unused_fields_are_reported_as_ignored():
    mapped = to_record(mailreach.DIALECT, MAILREACH)
    assert set(mapped.ignored) == {"id", "smtp_server_auth_type", "imap_issue",
                                   "spamchecker_only", "test"}
    assert mapped.record["smtpEncryption"] == "starttls" and mapped.record["smtpOnly"] is True
    body = {**SMARTLEAD_SEED, "custom_tracking_url": "t.example.com", "client_id": 3,
            "token": {"a": 1}}
    assert set(to_record(smartlead.DIALECT, body).ignored) == {
        "custom_tracking_url", "client_id", "token"}


def test_missing_fields_flags_and_choices_are_named_in_the_vendors_words():
    errors = to_record(lemlist.DIALECT, {**LEMLIST_SEED, "smtp_secure": "yes",
                                         "sender_email": None})
    assert {e.field for e in errors} == {"smtp_secure", "sender_email"}
    errors = to_record(mailreach.DIALECT, {**MAILREACH, "provider": "yahoo"})
    assert errors == [FieldError("provider", "must be one of gmail, outlook, custom")]
    assert to_record(smartlead.DIALECT, [SMARTLEAD_SEED]) == [
        FieldError("body", "must be a JSON object")]


def test_validation_errors_name_the_field_the_client_sent():
    mapped = to_record(smartlead.DIALECT, {**SMARTLEAD_SEED, "smtp_port": "abc",
                                           "max_email_per_day": 0, "imap_password": ""})
    errors = vendor_errors(smartlead.DIALECT, mapped, validate_row(mapped.record))
    assert {e.field for e in errors} == {"smtp_port", "max_email_per_day"}
    mapped = to_record(smartlead.DIALECT, {**SMARTLEAD_SEED, "password": "x\x00"})
    errors = vendor_errors(smartlead.DIALECT, mapped, validate_row(mapped.record))
    assert {e.field for e in errors} == {"password"}
    mapped = to_record(lemlist.DIALECT, {**LEMLIST_SEED, "imap_port": 70000})
    errors = vendor_errors(lemlist.DIALECT, mapped, validate_row(mapped.record))
    assert [e.field for e in errors] == ["imap_port"]


def test_lemlist_takes_the_key_from_the_basic_password_whatever_the_user():
    def basic(pair: str) -> str:
        return "Basic " + base64.b64encode(pair.encode()).decode()

    assert lemlist.key_from_basic(basic(":mc_key")) == "mc_key"
    assert lemlist.key_from_basic(basic("anyone:mc_key")) == "mc_key"
    assert lemlist.key_from_basic(basic("mc_key")) == ""
    assert lemlist.key_from_basic("Bearer mc_key") == ""
    assert lemlist.key_from_basic("Basic %%%") == ""


def view(status=1, smtp="ok", imap="ok", imap_code=None):
    def result(outcome, code):
        return {"result": outcome, "errorCode": code, "error": code and "535 nope",
                "hint": None}
    return {"id": 7, "email": "a@example.com", "status": status, "emailServiceProvider": "gmail",
            "fromFirstName": "A", "fromLastName": "B", "suspended": False, "smtpOnly": False,
            "createdAt": "2026-01-01T00:00:00Z",
            "sending": {"warmupEnabled": True, "warmupPerDay": 20},
            "smtpConnection": result(smtp, None), "imapConnection": result(imap, imap_code)}


def test_answers_take_each_vendors_shape_and_status():
    assert smartlead.answer(view(), False, {})[1]["data"] == {
        "id": 7, "from_email": "a@example.com", "is_smtp_success": True,
        "is_imap_success": True,
        "warmup_details": {"status": "ACTIVE", "total_warmup_per_day": 20}}
    status, body = smartlead.answer(view(0, imap="failed", imap_code="auth_failed"), False, {})
    assert status == 400 and body["ok"] is False and body["data"]["is_imap_success"] is False
    assert body["errors"][0]["field"] == "imap_password"

    status, body = mailreach.answer(view(0, imap="failed", imap_code="connection_refused"),
                                    False, {})
    assert status == 200 and body["alive"] is False and body["imap_issue"] is True

    assert lemlist.answer(view(), False, {}) == (
        200, {"id": "7", "email": "a@example.com", "provider": "custom", "mailconnect": {}})
    status, body = lemlist.answer(view(0, imap="failed", imap_code="connection_refused"),
                                  False, {})
    assert status == 400 and body["id"] == "7"
    assert [e["field"] for e in body["errors"]] == ["imap_host"]
    assert mailreach.error_body("x: y", [FieldError("x", "y")]) == {
        "message": "x: y", "errors": {"x": ["y"]}}
