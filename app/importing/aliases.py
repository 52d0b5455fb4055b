"""Other tools' column names, mapped onto ours.

People export their mailboxes from Smartlead, lemlist, MailReach or Instantly and upload the file
as it is. Names are compared with case and punctuation removed, so `SMTP Host`, `smtp_host`,
`smtpHost` and `SMTP-HOST` are one column.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

# Our field name -> the names other tools use for it. Names that match ours once normalised
# (Smartlead's `smtp_host`) would match anyway; they are listed so the README table shows every
# vendor's spelling. When a row fills two of them, our own spelling wins, then the earlier name
# here. Every validated field has a row, so the table is complete.
ALIASES: dict[str, tuple[str, ...]] = {
    "emailServiceProvider": ("type", "provider"),
    "fromName": ("from_name", "sender_name"),
    "fromFirstName": ("first_name",),
    "fromLastName": ("last_name",),
    "smtpEmailAddress": ("from_email", "sender_email", "email"),
    "smtpUserName": ("smtp_username", "smtp_login", "smtp_server_username"),
    "smtpPassword": ("smtp_password", "smtp_server_password"),
    "smtpHost": ("smtp_host", "smtp_server"),
    "smtpPort": ("smtp_port", "smtp_server_port"),
    "smtpEncryption": ("smtp_secure", "smtp_server_starttls"),
    "imapEmailAddress": (),
    "imapUserName": ("imap_user_name", "imap_username", "imap_login", "imap_server_username"),
    "imapPassword": ("imap_password", "imap_server_password"),
    "imapHost": ("imap_host", "imap_server"),
    "imapPort": ("imap_port", "imap_server_port"),
    "imapEncryption": ("imap_secure",),
    "smtpOnly": ("smtp_only",),
    "proxyUrl": ("proxy",),  # EmailEngine's name
    "maxEmailPerDay": ("max_email_per_day", "daily_limit"),
    "minDelayMinutes": ("time_to_wait_in_mins",),
    "warmupEnabled": ("warmup_enabled",),
    "warmupPerDay": ("total_warmup_per_day",),
    "warmupDailyRampup": ("daily_rampup",),
    "warmupReplyRate": ("reply_rate_percentage",),
    "replyTo": ("different_reply_to_address",),
    "bcc": (),
    "signature": (),
    "tags": (),
    "suspended": ("is_suspended",),
    "authType": (),
    "oauth2Provider": (),
    "oauth2AccessToken": (),
    "oauth2RefreshToken": (),
    # One login for both protocols (Smartlead, MailReach); see EITHER_PROTOCOL.
    "password": (),
    "userName": ("user_name",),
}

# Aliases that are a yes/no for one kind of encryption rather than its name: what "yes" means.
# "No" leaves the encryption unset so validation infers it from the port, which is right for the
# usual pairs (lemlist's smtp_secure=false on 587) and still gives ssl on 465/993.
ENCRYPTION_FLAGS: dict[str, str] = {
    "smtp_secure": "ssl",
    "imap_secure": "ssl",
    "smtp_server_starttls": "starttls",
}

# The single-login helpers, and the fields each fills when the row leaves them blank.
EITHER_PROTOCOL: dict[str, tuple[str, str]] = {
    "password": ("smtpPassword", "imapPassword"),
    "userName": ("smtpUserName", "imapUserName"),
}

_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


@functools.lru_cache(maxsize=4096)  # the same few column names, once per row of a batch
def column_key(name: str) -> str:
    """The form names are compared in: lowercase, letters and digits only."""
    return re.sub(r"[\W_]+", "", name.casefold())


def _lookup() -> dict[str, tuple[str, int]]:
    # Normalised name -> (our field, rank); rank 0 is our own spelling, then ALIASES order.
    table: dict[str, tuple[str, int]] = {}
    for field, aliases in ALIASES.items():
        for rank, name in enumerate((field, *aliases)):
            table.setdefault(column_key(name), (field, rank))
    return table


_LOOKUP = _lookup()
_FLAG_MEANS = {column_key(name): value for name, value in ENCRYPTION_FLAGS.items()}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _flag(value: Any) -> bool | None:
    # str() covers JSON's true/false and 1/0 as well as CSV text; None means "not a yes/no".
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def canonical_record(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The record under our field names, and its columns that match none of them (in order).

    Of several columns for one field, a filled one beats a blank one, then our spelling beats an
    alias. `password`/`userName` only fill the per-protocol fields the record leaves blank.
    """
    result, _sources, unrecognised = _canonical(record)
    return result, unrecognised


def field_sources(record: Mapping[str, Any]) -> dict[str, str]:
    """Our field name -> the column of `record` its value came from (`smtp_port`,
    `password`), so that errors name what the client sent."""
    return _canonical(record)[1]


def _canonical(record: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    chosen: dict[str, tuple[tuple[bool, int], Any, str]] = {}
    unrecognised: list[str] = []
    for column, value in record.items():
        key = column_key(column)
        if key not in _LOOKUP:
            unrecognised.append(column)
            continue
        field, rank = _LOOKUP[key]
        if key in _FLAG_MEANS and not _blank(value):
            flag = _flag(value)
            if flag is False:
                continue
            if flag:
                value = _FLAG_MEANS[key]
            # Anything else ("ssl", "maybe") goes on as an encryption name for validation to judge.
        # Lower is better: filled before blank, then by rank; on a tie the first column stays.
        score = (_blank(value), rank)
        if field not in chosen or score < chosen[field][0]:
            chosen[field] = (score, value, column)
    result = {field: value for field, (_, value, _column) in chosen.items()}
    sources = {field: column for field, (_, _value, column) in chosen.items()}
    for helper, targets in EITHER_PROTOCOL.items():
        value = result.pop(helper, None)
        column = sources.pop(helper, helper)
        if _blank(value):
            continue
        for target in targets:
            if _blank(result.get(target)):
                result[target] = value
                sources[target] = column
    return result, sources, unrecognised


def flatten_single_connect(body: Mapping[str, Any]) -> dict[str, Any]:
    """Saleshandy's single-connect body, `payload: {smtp: {...}, imap: {...}}`, as one flat row.

    `payload.smtp.host` becomes `smtpHost` and so on; top-level fields are kept. Any other payload
    entry stays, as `payload.<name>`, so it is reported as ignored rather than lost. A body
    without a payload object is returned as it is, so flat rows can pass through too.
    """
    return _flattened(body)[0]


def sent_names(body: Mapping[str, Any]) -> dict[str, str]:
    """Our field name -> where a single-connect `body` put it, as the client wrote it:
    `smtpPort` -> `payload.smtp.port` (or `smtp_port`, `smtpPort`). Fields the body did not
    give (filled by a preset) are not in it."""
    flat, paths = _flattened(body)
    return {field: paths.get(column, column) for field, column in field_sources(flat).items()}


def _flattened(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    # The flat row, and each flattened name's path in the body (`smtpHost` -> payload.smtp.host).
    payload = body.get("payload")
    if not isinstance(payload, Mapping):
        return dict(body), {}
    flat = {name: value for name, value in body.items() if name != "payload"}
    paths: dict[str, str] = {}
    for section, settings in payload.items():
        if section in ("smtp", "imap") and isinstance(settings, Mapping):
            for name, value in settings.items():
                flat_name = section + name[:1].upper() + name[1:]
                flat[flat_name] = value
                paths[flat_name] = f"payload.{section}.{name}"
        else:
            flat[f"payload.{section}"] = settings
    return flat, paths


def alias_table_markdown() -> str:
    """The README's table of accepted column names, one row per field of ours."""
    lines = ["| field | also accepted as |", "|---|---|"]
    for field, aliases in ALIASES.items():
        names = ", ".join(
            f"`{name}` (true: {ENCRYPTION_FLAGS[name]})" if name in ENCRYPTION_FLAGS
            else f"`{name}`"
            for name in sorted(aliases)
        )
        lines.append(f"| `{field}` | {names} |")
    return "\n".join(lines) + "\n"
