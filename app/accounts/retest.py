"""Re-testing a stored account without ever writing back a stale copy of it.

A re-test (a reconnect or retry job's row, `/test`, a PATCH) tests the account's settings and
credentials as they are when its probe starts, and then writes only the result columns, by id,
and only over the settings version it tested. An account deleted meanwhile stays deleted; a
PATCH made meanwhile is never reverted, and the result of a test of older settings never lands
over the newer ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from app.accounts.service import stored_settings
from app.models import EmailAccount
from app.probe.model import AccountProbe

accounts = EmailAccount.__table__


@dataclass(frozen=True)
class RetestTarget:
    account_id: int
    team_id: int
    version: int
    settings: dict[str, Any]  # the shape job rows carry (stored_settings)
    credentials: str  # the CredentialCipher token of both passwords


_TARGET = select(
    accounts.c.id, accounts.c.team_id, accounts.c.settings_version, accounts.c.credentials,
    accounts.c.email, accounts.c.provider, accounts.c.from_first_name,
    accounts.c.from_last_name, accounts.c.from_name, accounts.c.smtp_only,
    accounts.c.smtp_email, accounts.c.smtp_username, accounts.c.smtp_host, accounts.c.smtp_port,
    accounts.c.smtp_encryption, accounts.c.imap_email, accounts.c.imap_username,
    accounts.c.imap_host, accounts.c.imap_port, accounts.c.imap_encryption,
).where(accounts.c.id == bindparam("account_id"), accounts.c.team_id == bindparam("team_id"))

_WRITE_RESULT = (
    update(accounts)
    # Not bindparam("team_id"): an UPDATE reserves its table's column names for SET values.
    .where(accounts.c.id == bindparam("account_id"), accounts.c.team_id == bindparam("of_team"),
           accounts.c.settings_version == bindparam("version"))
    .values(**{name: bindparam(name) for name in (
        "status", "smtp_result", "smtp_error_code", "smtp_error", "imap_result",
        "imap_error_code", "imap_error", "last_tested_at")})
)


def load_retest_target(connection: Connection, team_id: int, account_id: int
                       ) -> RetestTarget | None:
    """The account as it is now; None when it no longer exists."""
    row = connection.execute(_TARGET, {"account_id": account_id, "team_id": team_id}
                             ).one_or_none()
    if row is None:
        return None
    return RetestTarget(row.id, row.team_id, row.settings_version, stored_settings(row),
                        row.credentials)


def write_retest_result(connection: Connection, target: RetestTarget, probe: AccountProbe,
                        now: dt.datetime) -> bool:
    """Store a re-test's result on the account; False when the account was deleted or its
    settings changed since the probe started (then the result is not the account's)."""
    return bool(connection.execute(_WRITE_RESULT, {
        "account_id": target.account_id, "of_team": target.team_id, "version": target.version,
        "status": 1 if probe.verified else 0,
        "smtp_result": probe.smtp.outcome, "smtp_error_code": probe.smtp.error_code,
        "smtp_error": probe.smtp.error, "imap_result": probe.imap.outcome,
        "imap_error_code": probe.imap.error_code, "imap_error": probe.imap.error,
        "last_tested_at": now,
    }).rowcount)
