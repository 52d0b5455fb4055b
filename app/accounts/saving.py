"""Saving a tested mailbox: always saved, whatever the result, one account per (team, email)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, NamedTuple

from sqlalchemy import Connection, Insert, bindparam, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.importing.rows import AUTH, OAUTH2_PROVIDER, record_detected
from app.models import AccountDeletion, EmailAccount
from app.probe.model import AccountProbe, AuthMethod

_accounts = EmailAccount.__table__
_deletions = AccountDeletion.__table__
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
SENDING_COLUMNS = {
    "maxEmailPerDay": "max_email_per_day",
    "minDelayMinutes": "min_delay_minutes",
    "warmupEnabled": "warmup_enabled",
    "warmupPerDay": "warmup_per_day",
    "warmupDailyRampup": "warmup_daily_rampup",
    "warmupReplyRate": "warmup_reply_rate",
    "replyTo": "reply_to",
    "bcc": "bcc",
    "signature": "signature",
    "tags": "tags",
    "suspended": "suspended",
}


class Upserted(NamedTuple):
    # None: the account was deleted after these settings were submitted, and stays deleted.
    account_id: int | None
    # False: the account holds settings submitted after these (a PATCH, or a later import),
    # which were kept, or it was deleted since; this test's settings and result were not saved.
    saved: bool


def upsert_tested_account(
    connection: Connection,
    team_id: int,
    settings: dict[str, Any],
    credentials: str,
    probe: AccountProbe,
    now: dt.datetime,
    submitted_at: dt.datetime,
) -> Upserted:
    """Insert or update the team's account for this email, unless it holds settings submitted
    after `submitted_at` (when these were: a job's POST, a request's start) or was deleted
    after then. An encryption the probe detected is saved in place of `auto`, so later tests
    use it."""
    settings = record_detected(settings, probe) or settings
    values = {**settings_columns(settings, credentials), **result_columns(probe, now),
              "updated_at": now, "settings_submitted_at": submitted_at}
    # Settings the row left out keep their stored values on a re-import.
    for name, value in (settings.get("sending") or {}).items():
        values[SENDING_COLUMNS[name]] = value
    statement = _upsert(connection.dialect.name, tuple(values))
    key = {"team_id": team_id, "email": settings["email"]}
    account_id = connection.execute(statement, {**key, "created_at": now, **values}
                                    ).scalar_one_or_none()
    if account_id is not None:
        return Upserted(account_id, True)
    return Upserted(connection.execute(_ACCOUNT_ID, key).scalar_one_or_none(), False)


def record_deletion(connection: Connection, team_id: int, email: str, now: dt.datetime) -> None:
    """Remember that the team's account for this email was deleted now: a connect submitted
    before now does not bring it back (see upsert_tested_account)."""
    insert = _INSERTS[connection.dialect.name](_deletions).values(
        team_id=team_id, email=email, deleted_at=now)
    connection.execute(insert.on_conflict_do_update(
        index_elements=["team_id", "email"], set_={"deleted_at": insert.excluded.deleted_at}))


def settings_columns(settings: dict[str, Any], credentials: str) -> dict[str, Any]:
    """The columns that say what is tested: connection settings and the credentials token."""
    smtp, imap = settings["smtp"], settings.get("imap")
    return {
        "provider": settings["provider"],
        "from_first_name": settings.get("fromFirstName"),
        "from_last_name": settings.get("fromLastName"),
        "from_name": settings.get("fromName"),
        "smtp_email": smtp["email"],
        "smtp_username": smtp["username"],
        "smtp_host": smtp["host"],
        "smtp_port": smtp["port"],
        "smtp_encryption": smtp["encryption"],
        "imap_email": imap and imap["email"],
        "imap_username": imap and imap["username"],
        "imap_host": imap and imap["host"],
        "imap_port": imap and imap["port"],
        "imap_encryption": imap and imap["encryption"],
        "credentials": credentials,
        "smtp_only": imap is None,
        "auth_type": settings.get(AUTH) or AuthMethod.PASSWORD.value,
        "oauth2_provider": settings.get(OAUTH2_PROVIDER),
    }


RESULT_COLUMNS = ("status", "smtp_result", "smtp_error_code", "smtp_error", "imap_result",
                  "imap_error_code", "imap_error", "last_tested_at")
# An account whose settings changed and have not been tested yet: no result at all, so nobody
# reads the old settings' verdict as the new ones'.
UNTESTED = {**dict.fromkeys(RESULT_COLUMNS), "status": 0}


def result_columns(probe: AccountProbe, now: dt.datetime) -> dict[str, Any]:
    """The columns a test writes: the account's status and each protocol's verdict."""
    return {
        "status": 1 if probe.verified else 0,
        "smtp_result": probe.smtp.outcome,
        "smtp_error_code": probe.smtp.error_code,
        "smtp_error": probe.smtp.error,
        "imap_result": probe.imap.outcome,
        "imap_error_code": probe.imap.error_code,
        "imap_error": probe.imap.error,
        "last_tested_at": now,
    }


@functools.cache
def _upsert(dialect: str, updated: tuple[str, ...]) -> Insert:
    # Built once per dialect and column set (a handful of them), so running it skips
    # SQLAlchemy's statement construction and cache-key work: this runs once per tested row.
    inserted = ("team_id", "email", "created_at", *updated)
    given = {name: bindparam(name, type_=_accounts.c[name].type) for name in inserted}
    # A DELETE made after these settings were submitted is the user's latest word: no row to
    # insert. (An account created again since then is the newer settings' to keep.)
    deleted_since = exists().where(_deletions.c.team_id == given["team_id"],
                                   _deletions.c.email == given["email"],
                                   _deletions.c.deleted_at > given["settings_submitted_at"])
    source = select(*given.values()).where(~deleted_since)
    insert = _INSERTS[dialect](_accounts).from_select(inserted, source)
    # A connect stores the settings it tested: a new version, so that a re-test of the older
    # settings that is still running cannot write its result over this one.
    submitted = _accounts.c.settings_submitted_at
    return insert.on_conflict_do_update(
        index_elements=["team_id", "email"],
        set_={**{name: insert.excluded[name] for name in updated},
              "settings_version": _accounts.c.settings_version + 1},
        # A user's PATCH (or a later import) made while these settings waited for their
        # test wins: the newer submission is kept, and nothing is returned.
        where=or_(submitted.is_(None), submitted <= insert.excluded.settings_submitted_at),
    ).returning(_accounts.c.id)


_ACCOUNT_ID = select(_accounts.c.id).where(_accounts.c.team_id == bindparam("team_id"),
                                           _accounts.c.email == bindparam("email"))
