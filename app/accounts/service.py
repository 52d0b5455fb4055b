"""Accounts a team owns: connect one now, look them up, change them, re-test, delete."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, or_, select

from app.accounts.saving import SENDING_COLUMNS, upsert_tested_account
from app.clock import Clock
from app.credentials import CredentialCipher
from app.db import Database
from app.importing.rows import AccountInput, endpoint_from_settings
from app.models import EmailAccount
from app.probe.hints import hint_for
from app.probe.model import AccountProbe, AccountProber, ProtocolResult


@dataclass(frozen=True)
class ConnectResult:
    account_id: int | None  # None on a dry run
    email: str
    provider: str
    probe: AccountProbe


def connect_account(db: Database, cipher: CredentialCipher, clock: Clock, prober: AccountProber,
                    team_id: int, account: AccountInput, dry_run: bool = False) -> ConnectResult:
    """Test now and save whatever the result (unless it is a dry run)."""
    probe = prober.probe_sync(account.smtp, account.imap)
    account_id = None
    if not dry_run:
        with db.core_transaction() as connection:
            account_id = upsert_tested_account(connection, team_id, account.settings(),
                                               cipher.encrypt(account.secrets()), probe,
                                               clock.now())
    return ConnectResult(account_id, account.email, account.provider, probe)


def retest_account(db: Database, cipher: CredentialCipher, clock: Clock, prober: AccountProber,
                   team_id: int, account_id: int) -> ConnectResult | None:
    with db.reading() as session:
        account = session.scalar(_owned(team_id).where(EmailAccount.id == account_id))
    if account is None:
        return None
    settings = stored_settings(account)
    secrets = cipher.decrypt(account.credentials)
    smtp = endpoint_from_settings(settings["smtp"], secrets["smtp"])
    imap = endpoint_from_settings(settings["imap"], secrets["imap"]) if settings["imap"] else None
    probe = prober.probe_sync(smtp, imap)
    with db.core_transaction() as connection:
        upsert_tested_account(connection, team_id, settings, account.credentials, probe,
                              clock.now())
    return ConnectResult(account.id, account.email, account.provider, probe)


def stored_settings(account: EmailAccount) -> dict[str, Any]:
    """An account's settings in the shape job rows carry, so one save path serves both."""
    imap = None
    if not account.smtp_only:
        imap = {"email": account.imap_email, "username": account.imap_username,
                "host": account.imap_host, "port": account.imap_port,
                "encryption": account.imap_encryption}
    return {
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


@dataclass(frozen=True)
class AccountPage:
    accounts: list[EmailAccount]
    total: int


def list_accounts(db: Database, team_id: int, page: int, limit: int, status: int | None = None,
                  provider: str | None = None, search: str | None = None) -> AccountPage:
    query = _owned(team_id)
    if status is not None:
        query = query.where(EmailAccount.status == status)
    if provider:
        query = query.where(EmailAccount.provider == provider.lower())
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(or_(EmailAccount.email.like(pattern),
                                func.lower(EmailAccount.from_name).like(pattern)))
    with db.reading() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        accounts = session.scalars(
            query.order_by(EmailAccount.id).offset((page - 1) * limit).limit(limit)
        ).all()
    return AccountPage(list(accounts), total)


def get_account(db: Database, team_id: int, account_id: int) -> EmailAccount | None:
    with db.reading() as session:
        return session.scalar(_owned(team_id).where(EmailAccount.id == account_id))


def delete_account(db: Database, team_id: int, account_id: int) -> bool:
    with db.transaction() as session:
        return bool(session.execute(
            delete(EmailAccount)
            .where(EmailAccount.team_id == team_id, EmailAccount.id == account_id)
        ).rowcount)


def update_sending(db: Database, clock: Clock, team_id: int, account_id: int,
                   sending: dict[str, Any]) -> EmailAccount | None:
    with db.transaction() as session:
        account = session.scalar(_owned(team_id).where(EmailAccount.id == account_id))
        if account is None:
            return None
        for name, value in sending.items():
            setattr(account, SENDING_COLUMNS[name], value)
        account.updated_at = clock.now()
        return account


def _owned(team_id: int) -> Select:
    return select(EmailAccount).where(EmailAccount.team_id == team_id)


def protocol_view(result: ProtocolResult | None, provider: str) -> dict[str, Any]:
    if result is None:
        return {"success": None, "result": "skipped", "errorCode": None, "error": None,
                "hint": None}
    return {
        "success": result.ok,
        "result": result.outcome,
        "errorCode": result.error_code,
        "error": result.error,
        "hint": hint_for(result.error_code, provider, result.error),
    }


def account_view(account: EmailAccount) -> dict[str, Any]:
    """The API's shape of an account: settings, last results, timestamps; never a password."""
    def stored(prefix: str) -> dict[str, Any]:
        code, error = getattr(account, f"{prefix}_error_code"), getattr(account, f"{prefix}_error")
        return {"result": getattr(account, f"{prefix}_result"), "errorCode": code,
                "error": error, "hint": hint_for(code, account.provider, error)}

    return {
        "id": account.id,
        "email": account.email,
        "emailServiceProvider": account.provider,
        "fromName": account.from_name,
        "fromFirstName": account.from_first_name,
        "fromLastName": account.from_last_name,
        "status": account.status,
        "smtpOnly": account.smtp_only,
        "suspended": account.suspended,
        "smtp": {"emailAddress": account.smtp_email, "userName": account.smtp_username,
                 "host": account.smtp_host, "port": account.smtp_port,
                 "encryption": account.smtp_encryption},
        "imap": None if account.smtp_only else {
            "emailAddress": account.imap_email, "userName": account.imap_username,
            "host": account.imap_host, "port": account.imap_port,
            "encryption": account.imap_encryption},
        "smtpConnection": stored("smtp"),
        "imapConnection": stored("imap"),
        "sending": {name: getattr(account, column) for name, column in SENDING_COLUMNS.items()
                    if name != "suspended"},
        "lastTestedAt": _iso(account.last_tested_at),
        "createdAt": _iso(account.created_at),
        "updatedAt": _iso(account.updated_at),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
