"""Re-testing a stored account without ever writing back a stale copy of it.

A re-test (a reconnect or retry job's row, `/test`, a PATCH) tests the account's settings and
credentials as they are when its probe starts, and then writes only the result columns, by id,
and only over the settings version it tested. An account deleted meanwhile stays deleted; a
PATCH made meanwhile is never reverted, and the result of a test of older settings never lands
over the newer ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, exists, select, update

from app.accounts.saving import RESULT_COLUMNS, result_columns
from app.credentials import CredentialCipher, CredentialError
from app.db import Database
from app.importing.rows import AUTH, OAUTH2_PROVIDER, PROXY, endpoint_from_settings, login_secret
from app.models import EmailAccount
from app.probe.model import (
    AccountProbe,
    AuthMethod,
    Encryption,
    Endpoint,
    ErrorCode,
    ProtocolResult,
)

accounts = EmailAccount.__table__


@dataclass(frozen=True)
class RetestTarget:
    account_id: int
    team_id: int
    version: int
    settings: dict[str, Any]  # the shape job rows carry (stored_settings)
    credentials: str  # the CredentialCipher token of both passwords

    @property
    def hosts(self) -> list[str]:
        """The servers a test of this account contacts."""
        return [self.settings[p]["host"] for p in ("smtp", "imap") if self.settings.get(p)]


class RetestWrite(StrEnum):
    LANDED = "landed"  # the account's stored result is this test's
    CHANGED = "changed"  # its settings changed during the test; the newer ones' result stays
    DELETED = "deleted"  # the account was deleted during the test, and stays deleted


_TARGET = select(
    accounts.c.id, accounts.c.team_id, accounts.c.settings_version, accounts.c.credentials,
    accounts.c.email, accounts.c.provider, accounts.c.from_first_name,
    accounts.c.from_last_name, accounts.c.from_name, accounts.c.smtp_only,
    accounts.c.smtp_email, accounts.c.smtp_username, accounts.c.smtp_host, accounts.c.smtp_port,
    accounts.c.smtp_encryption, accounts.c.imap_email, accounts.c.imap_username,
    accounts.c.imap_host, accounts.c.imap_port, accounts.c.imap_encryption,
    accounts.c.auth_type, accounts.c.oauth2_provider,
).where(accounts.c.id == bindparam("account_id"), accounts.c.team_id == bindparam("team_id"))

_WRITE_RESULT = (
    update(accounts)
    # "of_team": in an UPDATE, a bind named after a column of its table is reserved.
    .where(accounts.c.id == bindparam("account_id"), accounts.c.team_id == bindparam("of_team"),
           accounts.c.settings_version == bindparam("version"))
    .values(**{name: bindparam(name) for name in RESULT_COLUMNS})
)
# An encryption the re-test detected, on an account stored with `auto` (its first test could
# not find out). Not a new settings version: it is what those settings tested.
_WRITE_DETECTED = {
    protocol: update(accounts)
    .where(accounts.c.id == bindparam("account_id"), accounts.c.team_id == bindparam("of_team"),
           accounts.c.settings_version == bindparam("version"),
           accounts.c[f"{protocol}_encryption"] == Encryption.AUTO.value)
    .values({f"{protocol}_encryption": bindparam("found")})
    for protocol in ("smtp", "imap")
}
_EXISTS = select(exists().where(accounts.c.id == bindparam("account_id"),
                                accounts.c.team_id == bindparam("team_id")))


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
    fence = {"account_id": target.account_id, "of_team": target.team_id,
             "version": target.version}
    if not connection.execute(_WRITE_RESULT, {**fence, **result_columns(probe, now)}).rowcount:
        return False
    for protocol, result in (("smtp", probe.smtp), ("imap", probe.imap)):
        if result.detected is not None:
            connection.execute(_WRITE_DETECTED[protocol], {**fence, "found": result.detected.value})
    return True


def store_retest_result(connection: Connection, target: RetestTarget, probe: AccountProbe,
                        now: dt.datetime) -> RetestWrite:
    """write_retest_result, and when it did not land, why: the caller tells a deleted account
    (404, account_deleted) from one that was changed meanwhile."""
    if write_retest_result(connection, target, probe, now):
        return RetestWrite.LANDED
    params = {"account_id": target.account_id, "team_id": target.team_id}
    return RetestWrite.CHANGED if connection.scalar(_EXISTS, params) else RetestWrite.DELETED


_STORE_TOKENS = (
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"), accounts.c.team_id == bindparam("of_team"),
           accounts.c.settings_version == bindparam("version"))
    .values(credentials=bindparam("credentials"))
)


def store_refreshed_tokens(db: Database, target: RetestTarget, credentials: str
                           ) -> RetestTarget:
    """Keep an OAuth2 account's refreshed tokens, only over the settings version the test
    read: a PATCH made meanwhile (its own credentials, a new version) wins. The target carries
    them either way: the test goes on with them, and its result is fenced the same way."""
    with db.core_transaction() as connection:
        connection.execute(_STORE_TOKENS, {"account_id": target.account_id,
                                           "of_team": target.team_id, "version": target.version,
                                           "credentials": credentials})
    return replace(target, credentials=credentials)


def retest_endpoints(target: RetestTarget, cipher: CredentialCipher
                     ) -> tuple[Endpoint | None, Endpoint | None]:
    """The SMTP and IMAP endpoints to test, with the stored passwords; CredentialError when
    the token cannot be opened (a key was removed from CREDENTIALS_KEYS)."""
    secrets = cipher.decrypt(target.credentials)
    smtp, imap = (
        endpoint_from_settings(target.settings[p], *login_secret(target.settings, secrets, p),
                               proxy=secrets.get(PROXY))
        if target.settings.get(p)
        else None
        for p in ("smtp", "imap"))
    return smtp, imap


def undecryptable(exc: CredentialError) -> AccountProbe:
    """The result of an account whose stored passwords cannot be opened: it cannot be tested,
    and that is its verdict (as a job row's is)."""
    failure = ProtocolResult("failed", ErrorCode.INTERNAL_ERROR, str(exc))
    return AccountProbe(smtp=failure, imap=failure, duration_ms=0)


def stored_settings(account: Any) -> dict[str, Any]:
    """An account's settings in the shape job rows carry, so one save path serves both
    (an EmailAccount or a row with its columns)."""
    imap = None
    if not account.smtp_only:
        imap = {"email": account.imap_email, "username": account.imap_username,
                "host": account.imap_host, "port": account.imap_port,
                "encryption": account.imap_encryption}
    settings = {
        "email": account.email,
        "provider": account.provider,
        "fromFirstName": account.from_first_name,
        "fromLastName": account.from_last_name,
        "fromName": account.from_name,
        "smtp": {"email": account.smtp_email, "username": account.smtp_username,
                 "host": account.smtp_host, "port": account.smtp_port,
                 "encryption": account.smtp_encryption},
        "imap": imap,
        "sending": {},
    }
    if account.auth_type == AuthMethod.OAUTH2:
        settings |= {AUTH: account.auth_type, OAUTH2_PROVIDER: account.oauth2_provider}
    return settings
