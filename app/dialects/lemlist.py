"""lemlist's `POST /api/user/email-accounts`: connect a custom SMTP/IMAP account, with HTTP
Basic authentication whose password is the API key (the user name is ignored).

Answers 200 `{"id", "email", "provider": "custom"}` when both logins work. A login that fails
is 400 naming the field to fix (the account is saved, status 0, and the answer carries its id),
as are bad fields; 401 for a bad key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from app.dialects.mapping import Dialect, failed_fields, message_of, ok_false_body

KEY_HEADER = "Authorization"
VALIDATION_STATUS = 400

DIALECT = Dialect(
    name="lemlist",
    fields={
        "sender_name": ("fromName",),
        "sender_email": ("smtpEmailAddress",),
        "smtp_host": ("smtpHost",),
        "smtp_port": ("smtpPort",),
        "smtp_login": ("smtpUserName",),
        "smtp_password": ("smtpPassword",),
        "smtp_secure": ("smtpEncryption",),
        "imap_host": ("imapHost",),
        "imap_port": ("imapPort",),
        "imap_login": ("imapUserName",),
        "imap_password": ("imapPassword",),
        "imap_secure": ("imapEncryption",),
    },
    required=("sender_name", "sender_email", "smtp_host", "smtp_port", "smtp_login",
              "smtp_password", "imap_host", "imap_port", "imap_login", "imap_password"),
    flags={"smtp_secure": "ssl", "imap_secure": "ssl"},
    fixed={"emailServiceProvider": "custom"},
)


def key_from_basic(header: str) -> str:
    """The API key in `Basic base64(user:key)` (user usually empty); "" when there is none."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    _user, _, key = decoded.partition(":")
    return key.strip()


error_body = ok_false_body  # lemlist's other answers carry `ok` too


def answer(view: dict[str, Any], updated: bool, detail: dict[str, Any]
           ) -> tuple[int, dict[str, Any]]:
    found = {"id": str(view["id"]), "email": view["email"], "provider": "custom"}
    if view["status"] != 1:
        failed = failed_fields(DIALECT, view)
        return 400, {**error_body(message_of(failed), failed), **found, "mailconnect": detail}
    return 200, {**found, "mailconnect": detail}
