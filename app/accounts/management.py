"""Accounts a team owns: connect one now, look them up, change them, re-test, delete."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update

from app.accounts.retest import (
    RetestTarget,
    RetestWrite,
    load_retest_target,
    retest_endpoints,
    store_refreshed_tokens,
    store_retest_result,
    undecryptable,
)
from app.accounts.saving import (
    SENDING_COLUMNS,
    UNTESTED,
    record_deletion,
    settings_columns,
    upsert_tested_account,
)
from app.accounts.slots import HostSlots
from app.clock import Clock
from app.credentials import CredentialCipher, CredentialError, Secret
from app.db import Database
from app.importing.rows import (
    ACCESS_TOKEN,
    EXPIRES_AT,
    OAUTH2_PROVIDER,
    PROXY,
    REFRESH_TOKEN,
    SENDING_FIELDS,
    AccountInput,
    FieldError,
    is_oauth2,
    validate_row,
)
from app.models import EmailAccount
from app.oauth.tokens import RefreshFailed, TokenRefresher, refresh_failure
from app.probe.hints import hint_for
from app.probe.model import AccountProbe, AccountProber, AuthMethod, ProtocolResult
from app.probe.policy import OPEN_POLICY, HostPolicy

accounts = EmailAccount.__table__


@dataclass(frozen=True)
class ConnectResult:
    account_id: int | None  # None on a dry run
    email: str
    provider: str
    probe: AccountProbe
    # A re-test's result lands only over the settings it tested (see app.accounts.retest).
    written: RetestWrite = RetestWrite.LANDED

    @property
    def stale(self) -> bool:
        """The account changed while this test ran: its stored result is the newer settings'
        (or none yet), or it was deleted; either way not this one."""
        return self.written != RetestWrite.LANDED


class InvalidChange(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class ChangedConcurrently(Exception):
    """Other changes kept landing between reading the account and writing this one."""


def connect_account(db: Database, cipher: CredentialCipher, clock: Clock, prober: AccountProber,
                    team_id: int, account: AccountInput, dry_run: bool = False, *,
                    slots: HostSlots, tokens: TokenRefresher | None = None) -> ConnectResult:
    """Test now and save whatever the result (unless it is a dry run).

    A new submission of settings: they are saved with their result, as a new settings version.
    An OAuth2 account's access token is refreshed first when it is due.
    """
    submitted_at = clock.now()
    try:
        fresh = tokens and account.auth == AuthMethod.OAUTH2 and tokens.fresh(
            team_id, account.oauth2_provider, account.oauth2_tokens)
    except RefreshFailed as exc:
        probe = refresh_failure(exc, account.imap is not None)
    else:
        if fresh:
            account = account.with_tokens(fresh)
        probe = slots.probe(prober, account.smtp, account.imap)
    if dry_run:
        return ConnectResult(None, account.email, account.provider, probe)
    with db.core_transaction() as connection:
        saved = upsert_tested_account(connection, team_id, account.settings(),
                                      cipher.encrypt(account.secrets()), probe, clock.now(),
                                      submitted_at)
    # A PATCH or DELETE of the account while this test ran is newer: it stays, this result
    # does not.
    written = (RetestWrite.LANDED if saved.saved else RetestWrite.CHANGED
               if saved.account_id is not None else RetestWrite.DELETED)
    return ConnectResult(saved.account_id, account.email, account.provider, probe, written)


def save_untested(db: Database, cipher: CredentialCipher, clock: Clock, team_id: int,
                  account: AccountInput) -> int:
    """Save the account's settings and secrets with no test (both protocols `skipped`, status
    0): for credentials that cannot be asked for again, such as a spent OAuth consent, when no
    test can run now. A /test later tests them."""
    untested = AccountProbe(smtp=ProtocolResult.skipped(), imap=ProtocolResult.skipped(),
                            duration_ms=0)
    now = clock.now()
    with db.core_transaction() as connection:
        return upsert_tested_account(connection, team_id, account.settings(),
                                     cipher.encrypt(account.secrets()), untested, now,
                                     now).account_id


def retest_account(db: Database, cipher: CredentialCipher, clock: Clock, prober: AccountProber,
                   team_id: int, account_id: int, *, slots: HostSlots,
                   tokens: TokenRefresher | None = None) -> ConnectResult | None:
    """Test the account as it is and store only the result, over the settings it tested.

    None when there is no such account. The result says whether it landed, or whether the
    account was changed or deleted while it was tested (then nothing was written).
    """
    target = _target(db, team_id, account_id)
    if target is None:
        return None
    with slots.held(target.hosts):
        # The wait for slots can be long: test the settings current when the probe starts.
        current = _target(db, team_id, account_id)
        if current is None:
            return None
        if current.hosts == target.hosts:
            target = current
        # Otherwise its hosts changed while we waited for these ones: test what we hold slots
        # for; the version fence then keeps that result off the newer settings.
        probe = _probe(db, target, cipher, prober, tokens)
    with db.core_transaction() as connection:
        written = store_retest_result(connection, target, probe, clock.now())
    return ConnectResult(target.account_id, target.settings["email"],
                         target.settings["provider"], probe, written)


@dataclass(frozen=True)
class AccountUpdate:
    account: EmailAccount | None  # as stored now; None if it was deleted during the test
    tested: ConnectResult | None  # None when only sending settings changed


# Each try re-reads and merges again; more than this many lost races in a row is a client
# hammering one account, and it gets a 409 to retry.
_UPDATE_TRIES = 3


def update_account(db: Database, cipher: CredentialCipher, clock: Clock, prober: AccountProber,
                   team_id: int, account_id: int, changes: dict[str, Any], *,
                   slots: HostSlots, policy: HostPolicy | None = None,
                   tokens: TokenRefresher | None = None) -> AccountUpdate | None:
    """Apply a PATCH. None when there is no such account; InvalidChange names bad fields.

    Sending settings change in place. Anything else is a new settings version: the new
    settings and credentials are written in one transaction, over the version they were
    merged with, and the account is marked untested (status 0, no results); then they are
    tested and the result lands only if they are still the account's settings.
    """
    sending_only = all(name in SENDING_FIELDS for name in changes)
    # A sending-only change connects nowhere, so the host policy is not its business: an
    # account whose host was banned since can still be suspended.
    policy = OPEN_POLICY if sending_only else policy
    for _ in range(_UPDATE_TRIES):
        account = get_account(db, team_id, account_id)
        if account is None:
            return None
        checked = _merged(account, changes, cipher, policy)
        if sending_only:
            return AccountUpdate(update_sending(db, clock, team_id, account_id, checked.sending),
                                 None)
        # Slots first: a 503 host_busy then leaves the account as it was.
        with slots.held([e.host for e in (checked.smtp, checked.imap) if e is not None]):
            target = _write_settings(db, cipher, clock, team_id, account, checked)
            if target is None:
                continue  # changed or deleted since we read it: read and merge again
            # The endpoints of `checked`, after an OAuth2 account's refresh when one is due.
            probe = _probe(db, target, cipher, prober, tokens)
        with db.core_transaction() as connection:
            written = store_retest_result(connection, target, probe, clock.now())
        tested = ConnectResult(account_id, checked.email, checked.provider, probe, written)
        return AccountUpdate(get_account(db, team_id, account_id), tested)
    raise ChangedConcurrently


def _target(db: Database, team_id: int, account_id: int) -> RetestTarget | None:
    with db.core_reading() as connection:
        return load_retest_target(connection, team_id, account_id)


def _probe(db: Database, target: RetestTarget, cipher: CredentialCipher,
           prober: AccountProber, tokens: TokenRefresher | None = None) -> AccountProbe:
    try:
        if tokens is not None and is_oauth2(target.settings):
            fresh = tokens.fresh(target.team_id, target.settings.get(OAUTH2_PROVIDER),
                                 cipher.decrypt(target.credentials))
            if fresh:
                target = store_refreshed_tokens(db, target, cipher.encrypt(fresh))
        smtp, imap = retest_endpoints(target, cipher)
    except CredentialError as exc:
        return undecryptable(exc)
    except RefreshFailed as exc:
        return refresh_failure(exc, target.settings.get("imap") is not None)
    return prober.probe_sync(smtp, imap)


def _merged(account: EmailAccount, changes: dict[str, Any], cipher: CredentialCipher,
            policy: HostPolicy | None) -> AccountInput:
    email = changes.get("smtpEmailAddress", account.email)
    if str(email).strip().lower() != account.email:
        raise InvalidChange([FieldError(
            "smtpEmailAddress", "cannot be changed; connect the new address as a new account")])
    # The whole merged account is checked: a host banned since it was saved is refused too.
    checked = validate_row({**_stored_record(account, cipher), **changes}, policy=policy)
    if isinstance(checked, list):
        raise InvalidChange(checked)
    if checked.auth == AuthMethod.OAUTH2:
        # The access token's expiry is no row field: it stays while the token does, so a
        # change of, say, the host still refreshes a token that is due.
        stored = _stored_secrets(account, cipher)
        if stored.get(EXPIRES_AT) and \
                checked.oauth2_tokens.get(ACCESS_TOKEN) == stored.get(ACCESS_TOKEN):
            checked = checked.with_tokens({**checked.oauth2_tokens,
                                           EXPIRES_AT: stored[EXPIRES_AT]})
    return checked


def _stored_secrets(account: EmailAccount, cipher: CredentialCipher) -> dict[str, Secret]:
    try:
        return cipher.decrypt(account.credentials)
    except CredentialError:
        # Stored under a key that is gone: the PATCH must give the passwords again, and
        # validation says so, naming the fields.
        return {}


def _stored_record(account: EmailAccount, cipher: CredentialCipher) -> dict[str, Any]:
    """The account as a bulk row, passwords included, for a PATCH to be merged into."""
    secrets = {p: s.reveal() for p, s in _stored_secrets(account, cipher).items()}
    record = {
        "emailServiceProvider": account.provider, "fromFirstName": account.from_first_name,
        "fromLastName": account.from_last_name, "fromName": account.from_name,
        "smtpEmailAddress": account.email, "smtpUserName": account.smtp_username,
        "smtpPassword": secrets.get("smtp"), "smtpHost": account.smtp_host,
        "smtpPort": account.smtp_port, "smtpEncryption": account.smtp_encryption,
        "smtpOnly": account.smtp_only,
        "proxyUrl": secrets.get(PROXY),  # kept unless the PATCH changes it ("" removes it)
    }
    if account.auth_type == AuthMethod.OAUTH2:
        record.update(authType=account.auth_type, oauth2Provider=account.oauth2_provider,
                      oauth2AccessToken=secrets.get(ACCESS_TOKEN),
                      oauth2RefreshToken=secrets.get(REFRESH_TOKEN))
    if not account.smtp_only:
        record.update(imapEmailAddress=account.imap_email, imapUserName=account.imap_username,
                      imapPassword=secrets.get("imap"), imapHost=account.imap_host,
                      imapPort=account.imap_port, imapEncryption=account.imap_encryption)
    return {k: v for k, v in record.items() if v is not None}


def _write_settings(db: Database, cipher: CredentialCipher, clock: Clock, team_id: int,
                    read: EmailAccount, checked: AccountInput) -> RetestTarget | None:
    """Store new settings as the next version, only over the version they were merged with;
    None when the account changed or went away since it was read."""
    settings = checked.settings()
    credentials = cipher.encrypt(checked.secrets())
    version = read.settings_version + 1
    now = clock.now()
    with db.core_transaction() as connection:
        written = connection.execute(
            update(accounts)
            .where(accounts.c.id == read.id, accounts.c.team_id == team_id,
                   accounts.c.settings_version == read.settings_version)
            .values(**settings_columns(settings, credentials), **UNTESTED,
                    **{SENDING_COLUMNS[name]: v for name, v in checked.sending.items()},
                    settings_version=version, updated_at=now, settings_submitted_at=now)
        ).rowcount
    if not written:
        return None
    return RetestTarget(read.id, team_id, version, settings, credentials)


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


def delete_account(db: Database, clock: Clock, team_id: int, account_id: int) -> bool:
    """Delete the account, and remember when, so that a connect submitted before now (a bulk
    row still waiting for its test) does not bring it back."""
    now = clock.now()
    with db.core_transaction() as connection:
        email = connection.execute(
            delete(EmailAccount.__table__)
            .where(EmailAccount.team_id == team_id, EmailAccount.id == account_id)
            .returning(EmailAccount.email)
        ).scalar_one_or_none()
        if email is None:
            return False
        record_deletion(connection, team_id, email, now)
    return True


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
