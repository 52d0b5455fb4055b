"""Smartlead's `POST /api/v1/email-accounts/save?api_key=KEY`: create or update one account.

Answers `{"ok", "message", "data": {...}}`: 200 when both logins work, 400 when one fails (the
account is saved all the same, as Smartlead does), 401 for a bad key, 422 for bad fields.
"""

from __future__ import annotations

from typing import Any

from app.dialects.mapping import Dialect, failed_fields, message_of, ok_false_body, protocols_ok

KEY_PARAMETER = "api_key"
VALIDATION_STATUS = 422
# Documented, read by the web adapter: the account to update rather than create.
ID = "id"

DIALECT = Dialect(
    name="smartlead",
    fields={
        "from_name": ("fromName",),
        "from_email": ("smtpEmailAddress",),
        "user_name": ("smtpUserName", "imapUserName"),
        "password": ("smtpPassword", "imapPassword"),
        "smtp_host": ("smtpHost",),
        "smtp_port": ("smtpPort",),
        "imap_host": ("imapHost",),
        "imap_port": ("imapPort",),
        "imap_user_name": ("imapUserName",),
        "imap_password": ("imapPassword",),
        "type": ("emailServiceProvider",),
        "warmup_enabled": ("warmupEnabled",),
        "total_warmup_per_day": ("warmupPerDay",),
        "daily_rampup": ("warmupDailyRampup",),
        "reply_rate_percentage": ("warmupReplyRate",),
        "max_email_per_day": ("maxEmailPerDay",),
        "time_to_wait_in_mins": ("minDelayMinutes",),
        "different_reply_to_address": ("replyTo",),
        "bcc": ("bcc",),
        "signature": ("signature",),
        "is_suspended": ("suspended",),
        ID: (),
    },
    required=("from_name", "from_email", "user_name", "password", "smtp_host", "smtp_port",
              "imap_host", "imap_port", "warmup_enabled"),
    choices={"type": {"gmail": "gmail", "outlook": "outlook", "smtp": "smtp"}},
)

CONNECTION_FAILED = "SMTP or IMAP connection failed - check credentials and server settings"


# Smartlead's and lemlist's answers both carry `ok`; so do their errors.
error_body = ok_false_body


def answer(view: dict[str, Any], updated: bool, detail: dict[str, Any]
           ) -> tuple[int, dict[str, Any]]:
    """The answer for the stored account `view` (account_view's shape)."""
    smtp_ok, imap_ok = protocols_ok(view)
    sending = view["sending"]
    data = {
        "id": view["id"],
        "from_email": view["email"],
        "is_smtp_success": bool(smtp_ok),
        "is_imap_success": bool(imap_ok),
        "warmup_details": {"status": "ACTIVE" if sending["warmupEnabled"] else "INACTIVE",
                           "total_warmup_per_day": sending["warmupPerDay"]},
    }
    if view["status"] != 1:
        failed = failed_fields(DIALECT, view)
        body = error_body(f"{CONNECTION_FAILED}. {message_of(failed)}", failed)
        return 400, {**body, "data": data, "mailconnect": detail}
    message = "Email account updated successfully" if updated else \
        "Email account added successfully"
    return 200, {"ok": True, "message": message, "data": data, "mailconnect": detail}
