"""MailReach's `POST /v1/imap_auth` (`X-Api-Key` header): create or update, by email, an account
by authenticating it.

Answers 200 with the account (`alive`: both logins work; `imap_issue`: the IMAP login failed),
saved whatever the result; 401 for a bad key; 422 `{"message", "errors": {field: [...]}}` for
bad fields.
"""

from __future__ import annotations

from typing import Any

from app.dialects.mapping import Dialect, protocols_ok
from app.importing.rows import FieldError

KEY_HEADER = "X-Api-Key"
VALIDATION_STATUS = 422

DIALECT = Dialect(
    name="mailreach",
    fields={
        "email": ("smtpEmailAddress",),
        "password": ("smtpPassword", "imapPassword"),
        "first_name": ("fromFirstName",),
        "last_name": ("fromLastName",),
        "provider": ("emailServiceProvider",),
        "smtp_server": ("smtpHost",),
        "smtp_server_port": ("smtpPort",),
        "smtp_server_username": ("smtpUserName",),
        "smtp_server_password": ("smtpPassword",),
        "smtp_server_starttls": ("smtpEncryption",),
        "imap_server": ("imapHost",),
        "imap_server_port": ("imapPort",),
        "imap_server_username": ("imapUserName",),
        "imap_server_password": ("imapPassword",),
        "smtp_only": ("smtpOnly",),
    },
    required=("email", "first_name", "last_name", "provider"),
    flags={"smtp_server_starttls": "starttls"},
    choices={"provider": {"gmail": "gmail", "outlook": "outlook", "custom": "custom"}},
)


def error_body(message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if errors:
        by_field: dict[str, list[str]] = {}
        for error in errors:
            by_field.setdefault(error.field, []).append(error.message)
        body["errors"] = by_field
    return body


def answer(view: dict[str, Any], updated: bool, detail: dict[str, Any]
           ) -> tuple[int, dict[str, Any]]:
    _, imap_ok = protocols_ok(view)
    return 200, {
        "id": view["id"],
        "created_at": view["createdAt"],
        "email": view["email"],
        "first_name": view["fromFirstName"],
        "last_name": view["fromLastName"],
        "provider": view["emailServiceProvider"],
        "alive": view["status"] == 1,
        "suspended": bool(view["suspended"]),
        "warming_enabled": bool(view["sending"]["warmupEnabled"]),
        "imap_issue": imap_ok is False,
        "smtp_only": view["smtpOnly"],
        "mailconnect": detail,
    }
