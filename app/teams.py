"""Teams and their API keys. Only a SHA-256 of each key is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.clock import Clock, SystemClock
from app.credentials import CredentialCipher, Secret
from app.db import Database
from app.models import ApiKey, Team

log = logging.getLogger(__name__)

KEY_PREFIX = "mc_"


@dataclass(frozen=True)
class IssuedKey:
    team_id: int
    team_name: str
    key: str


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(db: Database, clock: Clock, team_name: str) -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as session:
        team = session.scalar(select(Team).where(Team.name == team_name))
        if team is None:
            team = Team(name=team_name, created_at=clock.now())
            session.add(team)
            session.flush()
        session.add(ApiKey(team_id=team.id, key_hash=hash_key(key), prefix=key[:10],
                           created_at=clock.now()))
        return IssuedKey(team.id, team.name, key)


_ACTIVE_KEY = select(ApiKey.id, ApiKey.team_id).where(ApiKey.key_hash == bindparam("key_hash"),
                                                    ApiKey.revoked_at.is_(None))


def team_for_key(db: Database, key: str) -> int | None:
    """The team of an unrevoked key, or None."""
    found = _active_key(db, hash_key(key))
    return found[1] if found else None


def _active_key(db: Database, key_hash: str) -> tuple[int, int] | None:
    """(key id, team id) of an unrevoked key."""
    with db.core_reading() as connection:
        row = connection.execute(_ACTIVE_KEY, {"key_hash": key_hash}).first()
    return (row.id, row.team_id) if row else None


# How long a web process trusts a key it has checked: a revoked key is refused within this.
KEY_RECHECK_SECONDS = 1.0
# How often a web process stamps a key's last_used_at.
LAST_USED_EVERY_SECONDS = 60.0


@dataclass(slots=True)
class _CachedKey:
    key_id: int
    team_id: int
    fresh_until: float  # monotonic time until which the key is trusted without a lookup
    stamp_due: float  # monotonic time from which its last_used_at may be written again


class KeyCache:
    """Teams of recently seen keys. A key is trusted for `recheck_seconds` after it was read,
    so a client polling many times a second costs one indexed lookup per key per second, and a
    key revoked in any process is refused here within `recheck_seconds`. Unknown and revoked
    keys are not kept: they are looked up every time. A key's last_used_at is written at most
    once per `last_used_every` per process (the first use included), never once per request."""

    def __init__(self, db: Database, clock: Clock | None = None,
                 recheck_seconds: float = KEY_RECHECK_SECONDS,
                 last_used_every: float = LAST_USED_EVERY_SECONDS, max_keys: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic,
                 stamp_in_background: bool = True) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self._recheck = recheck_seconds
        self._last_used_every = last_used_every
        self._max_keys = max_keys
        self._stamp_in_background = stamp_in_background
        self._keys: dict[str, _CachedKey] = {}
        self._lock = threading.Lock()

    def team_for_key(self, key: str) -> int | None:
        digest = hash_key(key)
        # Taken before the lookup: what the lookup saw is trusted until now + recheck at most.
        now = self._monotonic()
        with self._lock:
            cached = self._keys.get(digest)
        if cached is None or cached.fresh_until <= now:
            cached = self._refresh(digest, now)
            if cached is None:
                return None
        with self._lock:
            stamp = cached.stamp_due <= now
            if stamp:
                cached.stamp_due = now + self._last_used_every
        if stamp:
            at = self._clock.now()
            if self._stamp_in_background:
                # Off the request path: a poll never waits for a write (on SQLite a write can
                # queue behind a worker's for seconds). One short thread per key per minute.
                threading.Thread(target=self._stamp_last_used, args=(cached.key_id, at),
                                 name="api-key-last-used", daemon=True).start()
            else:
                self._stamp_last_used(cached.key_id, at)
        return cached.team_id

    def _refresh(self, digest: str, now: float) -> _CachedKey | None:
        found = _active_key(self._db, digest)
        with self._lock:
            previous = self._keys.pop(digest, None)
            if found is None:
                return None
            if len(self._keys) >= self._max_keys:
                self._keys.clear()
            # A re-check keeps the key's stamp schedule: re-reading is not a reason to write.
            stamp_due = previous.stamp_due if previous and previous.key_id == found[0] else now
            cached = _CachedKey(found[0], found[1], now + self._recheck, stamp_due)
            self._keys[digest] = cached
            return cached

    def _stamp_last_used(self, key_id: int, at: dt.datetime) -> None:
        try:
            with self._db.core_transaction() as connection:
                # Other processes stamp the same key: skip the write when one did so lately
                # (half the interval, so clock drift between hosts never delays a stamp long).
                recent = at - dt.timedelta(seconds=self._last_used_every / 2)
                connection.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id,
                           or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= recent))
                    .values(last_used_at=at))
        except SQLAlchemyError as exc:
            # Bookkeeping only, and no request is waiting for it: say so and try again at the
            # next stamp, a minute later (a database outage must not kill threads noisily).
            log.warning("could not record the last use of API key id %s: %s", key_id,
                        type(exc).__name__)


@dataclass(frozen=True)
class KeyListing:
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def list_api_keys(db: Database, team_id: int) -> list[KeyListing]:
    """A team's keys, oldest first, by prefix (never the key, which is not stored)."""
    with db.reading() as session:
        rows = session.execute(
            select(ApiKey.prefix, ApiKey.created_at, ApiKey.last_used_at, ApiKey.revoked_at)
            .where(ApiKey.team_id == team_id).order_by(ApiKey.created_at, ApiKey.id)).all()
    return [KeyListing(*row) for row in rows]


class KeyNotFound(LookupError):
    pass


class AmbiguousKeyPrefix(LookupError):
    def __init__(self, prefix: str, matches: int) -> None:
        super().__init__(prefix)
        self.prefix = prefix
        self.matches = matches


@dataclass(frozen=True)
class Revocation:
    prefix: str
    team_name: str
    revoked_at: dt.datetime
    already_revoked: bool


def revoke_api_key(db: Database, clock: Clock, key_or_prefix: str) -> Revocation:
    """Revoke a key given whole or by the prefix list_api_keys shows. Revoking a revoked key
    changes nothing. Raises KeyNotFound, or AmbiguousKeyPrefix when several keys share it."""
    with db.transaction() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key_or_prefix)))
        if key is None:
            matches = session.scalars(
                select(ApiKey).where(ApiKey.prefix == key_or_prefix)).all()
            if not matches:
                raise KeyNotFound(key_or_prefix)
            if len(matches) > 1:
                raise AmbiguousKeyPrefix(key_or_prefix, len(matches))
            key = matches[0]
        already = key.revoked_at is not None
        if not already:
            key.revoked_at = clock.now()
        team_name = session.scalar(select(Team.name).where(Team.id == key.team_id))
        return Revocation(key.prefix, team_name or "", key.revoked_at, already)


class UnknownTeam(LookupError):
    pass


def team_id_by_name(db: Database, team_name: str) -> int:
    with db.reading() as session:
        team_id = session.scalar(select(Team.id).where(Team.name == team_name))
    if team_id is None:
        raise UnknownTeam(team_name)
    return team_id


def set_callback_url(db: Database, team_id: int, url: str | None) -> None:
    """The team's default webhook URL (None: no default); check it with check_callback_url."""
    with db.transaction() as session:
        session.execute(update(Team).where(Team.id == team_id).values(callback_url=url))


_WEBHOOK_SECRET_NAME = "webhook"  # noqa: S105 (the name of the secret, not one)


def webhook_secret(db: Database, cipher: CredentialCipher, team_id: int) -> Secret:
    """The team's webhook signing secret, created on first use; stored encrypted."""
    with db.reading() as session:
        token = session.scalar(select(Team.webhook_secret).where(Team.id == team_id))
    if token is None:
        fresh = cipher.encrypt({_WEBHOOK_SECRET_NAME: Secret("whsec_" + secrets.token_hex(32))})
        with db.transaction() as session:
            # Two first uses at once: the first write wins and both read it back.
            session.execute(update(Team).where(Team.id == team_id,
                                               Team.webhook_secret.is_(None))
                            .values(webhook_secret=fresh))
            token = session.scalar(select(Team.webhook_secret).where(Team.id == team_id))
    if token is None:
        raise UnknownTeam(str(team_id))
    return cipher.decrypt(token)[_WEBHOOK_SECRET_NAME]
