import pytest

from app.importing.rows import AccountInput, FieldError, validate_row
from app.probe.model import Encryption
from app.probe.policy import OPEN_POLICY
from tests.factories import bulk_row


def errors_of(raw) -> dict[str, str]:
    result = validate_row(raw)
    assert isinstance(result, list), result
    return {e.field: e.message for e in result}


def test_valid_row_is_normalised():
    result = validate_row(bulk_row("Sarah@Example.COM", emailServiceProvider="GSuite",
                                   smtpEncryption="STARTTLS", imapEncryption="SSL"))
    assert isinstance(result, AccountInput)
    assert result.email == "sarah@example.com"
    assert result.provider == "gsuite"
    assert result.smtp.encryption is Encryption.STARTTLS
    assert result.imap.encryption is Encryption.SSL
    assert result.from_name == "Sarah Chen"
    assert result.smtp.password.reveal() == "s3cret-smtp"
    assert "s3cret" not in repr(result)


@pytest.mark.parametrize(("port", "encryption"), [
    (465, Encryption.SSL), (587, Encryption.STARTTLS), (25, Encryption.STARTTLS),
    (2525, Encryption.STARTTLS),
])
def test_smtp_encryption_inferred_from_port(port, encryption):
    result = validate_row(bulk_row(smtpPort=port, smtpEncryption=None))
    assert result.smtp.encryption is encryption


@pytest.mark.parametrize(
    ("port", "encryption"), [(993, Encryption.SSL), (143, Encryption.STARTTLS)]
)
def test_imap_encryption_inferred_from_port(port, encryption):
    result = validate_row(bulk_row(imapPort=port, imapEncryption=None))
    assert result.imap.encryption is encryption


def test_none_means_plaintext_and_port_inferred_from_encryption():
    result = validate_row(bulk_row(smtpPort=None, smtpEncryption="none"))
    assert result.smtp.encryption is Encryption.NONE
    assert result.smtp.port == 25


def test_port_as_text_from_csv():
    result = validate_row(bulk_row(smtpPort="465", imapPort="993.0"))
    assert (result.smtp.port, result.imap.port) == (465, 993)


def test_every_bad_field_is_named():
    errors = errors_of(bulk_row("not-an-email", smtpPort=70000, imapEncryption="tls1.3",
                                emailServiceProvider="hotmailx", smtpHost="bad host"))
    assert errors["smtpEmailAddress"] == "is not a valid email address"
    assert errors["smtpPort"] == "must be between 1 and 65535"
    assert errors["imapEncryption"] == "must be one of ssl, tls, starttls, none or auto"
    assert errors["emailServiceProvider"].startswith("unknown provider 'hotmailx'")
    assert errors["smtpHost"] == "is not a valid host name"


def test_missing_required_fields():
    errors = errors_of({"smtpHost": "smtp.example.com"})
    assert errors["smtpEmailAddress"] == "is required"
    # "other" has no preset to fill the host from.
    assert errors_of(bulk_row(emailServiceProvider="other", imapHost=None)) == {
        "imapHost": "is required (unless smtpOnly is true)"}


def test_missing_password():
    assert errors_of(bulk_row(smtpPassword=None)) == {"smtpPassword": "is required"}


@pytest.mark.parametrize(("smtp_port", "imap_port"), [(2587, 1993), (993, 465), (143, 25)])
def test_other_ports_without_encryption_are_left_to_the_probe(smtp_port, imap_port):
    # Each protocol's own well-known ports only: IMAP's 993 says nothing about an SMTP row.
    result = validate_row(bulk_row(smtpPort=smtp_port, smtpEncryption=None, imapPort=imap_port,
                                   imapEncryption=None), policy=OPEN_POLICY)
    assert result.smtp.encryption is result.imap.encryption is Encryption.AUTO
    assert result.filled == ()  # the probe's finding is listed once it is made
    assert result.settings()["smtp"]["encryption"] == "auto"


def test_auto_may_be_asked_for_on_a_given_port():
    # A stored account that is still `auto` comes back through validation on a PATCH.
    result = validate_row(bulk_row(smtpPort=587, smtpEncryption="AUTO"))
    assert result.smtp.encryption is Encryption.AUTO
    assert errors_of(bulk_row(smtpPort=None, smtpEncryption="auto")) == {
        "smtpPort": "is required when the encryption is to be detected"}


@pytest.mark.parametrize("port", [0, -1, "abc", True, 3.5])
def test_bad_ports(port):
    assert "smtpPort" in errors_of(bulk_row(smtpPort=port))


def test_row_that_is_not_an_object():
    assert validate_row(["a"]) == [FieldError("row", "must be an object of account fields")]


def test_imap_password_defaults_to_smtp_password():
    result = validate_row(bulk_row(imapPassword=None))
    assert result.imap.password.reveal() == "s3cret-smtp"


def test_password_never_in_error_messages():
    result = validate_row(bulk_row(smtpPassword={"nested": "hunter2"}))
    assert "hunter2" not in repr(result)


@pytest.mark.parametrize("overrides", [{"smtpOnly": "TRUE"}, {"emailServiceProvider": "SendGrid"}])
def test_smtp_only_rows_need_no_imap(overrides):
    raw = bulk_row(imapHost=None, imapPort=None, imapEncryption=None, **overrides)
    result = validate_row(raw)
    assert isinstance(result, AccountInput), result
    assert result.imap is None and result.settings()["imap"] is None
    assert set(result.secrets()) == {"smtp"}


def test_sending_settings_validated_and_kept_only_when_given():
    result = validate_row(bulk_row(maxEmailPerDay="50", warmupEnabled="yes", tags="a, b",
                                   replyTo="Reply@Example.com", signature="<b>Hi</b>"))
    assert result.sending == {"maxEmailPerDay": 50, "warmupEnabled": True, "tags": ["a", "b"],
                              "replyTo": "reply@example.com", "signature": "<b>Hi</b>"}
    assert validate_row(bulk_row()).sending == {}
    errors = errors_of(bulk_row(maxEmailPerDay=0, warmupReplyRate=101, warmupEnabled="maybe",
                                bcc="nope"))
    assert errors == {"maxEmailPerDay": "must be between 1 and 100000",
                      "warmupReplyRate": "must be between 0 and 100",
                      "warmupEnabled": "must be true or false",
                      "bcc": "is not a valid email address"}


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_cells_count_as_not_given(blank):
    # CSV gives "" for every empty cell: a default, a preset or "is required" applies.
    blanks = dict.fromkeys(("smtpPort", "imapEmailAddress", "maxEmailPerDay"), blank)
    result = validate_row({**bulk_row(emailServiceProvider=blank, smtpEncryption="ssl"),
                           **blanks})
    assert isinstance(result, AccountInput), result
    assert (result.provider, result.smtp.port, result.imap_email) == (
        "other", 465, "sarah@example.com")
    assert errors_of(bulk_row(emailServiceProvider="other", smtpHost=blank)) == {
        "smtpHost": "is required"}


@pytest.mark.parametrize("field", ["smtpPort", "imapPort", "maxEmailPerDay"])
def test_explicit_null_number_is_not_given(field):
    # A JSON null used to reach the range check and raise TypeError (a 500 for the batch).
    result = validate_row({**bulk_row(), field: None})
    assert isinstance(result, AccountInput), result


def test_missing_smtp_host_is_required_without_a_preset():
    assert errors_of(bulk_row(emailServiceProvider="smtp", smtpHost=None)) == {
        "smtpHost": "is required"}


CONTROL_CHARACTERS = [chr(c) for c in range(0x20)] + ["\x7f"]
# Fields that become a login or a server to connect to. An address stands in for a missing
# user name, so it is held to the same rule.
LOGIN_FIELDS = ["smtpHost", "imapHost", "smtpUserName", "imapUserName", "smtpEmailAddress",
                "imapEmailAddress"]
LOGIN_VALUES = {"smtpHost": "smtp.example.com", "imapHost": "imap.example.com"}


@pytest.mark.parametrize("field", LOGIN_FIELDS)
@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_host_and_user_names_refuse_control_characters(field, character):
    good = LOGIN_VALUES.get(field, "sarah@example.com")
    # Inside the value, and at its end, where stripping a cell must not quietly drop it.
    for value in (good[:4] + character + good[4:], good + character):
        errors = errors_of(bulk_row(**{field: value}))
        assert list(errors) == [field], (value, errors)
        if character == "\x00":
            assert errors[field] == "must not contain NUL characters"
        else:
            assert errors[field] == ("must not contain control characters (U+0000 to U+001F "
                                     f"or U+007F; found U+{ord(character):04X})")


def test_a_user_name_with_a_line_break_cannot_smuggle_a_command():
    errors = errors_of(bulk_row(smtpUserName="sarah@example.com\r\nA1 LOGOUT",
                                imapUserName="sarah\r\n@example.com"))
    assert set(errors) == {"smtpUserName", "imapUserName"}
    assert all("control characters" in message for message in errors.values())


def test_unicode_display_names_are_kept_exactly():
    result = validate_row(bulk_row(fromFirstName="Zoë", fromLastName="Ñúñez 李雷",
                                   fromName="Zoë Ñúñez 李雷 🚀"))
    assert isinstance(result, AccountInput), result
    assert (result.from_first_name, result.from_last_name, result.from_name) == (
        "Zoë", "Ñúñez 李雷", "Zoë Ñúñez 李雷 🚀")
    joined = validate_row(bulk_row(fromFirstName="Zoë", fromLastName="Ñúñez 李雷"))
    assert joined.from_name == "Zoë Ñúñez 李雷"
    assert joined.settings()["fromName"] == "Zoë Ñúñez 李雷"
