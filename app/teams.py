"""Teams and their API keys. Only a SHA-256 of each key is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from app.clock import Clock
from app.credentials import CredentialCipher, Secret
from app.db import Database
from app.models import ApiKey, Team

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


_TEAM_FOR_HASH = select(ApiKey.team_id).where(ApiKey.key_hash == bindparam("key_hash"))


def team_for_key(db: Database, key: str) -> int | None:
    return _team_for_hash(db, hash_key(key))


def _team_for_hash(db: Database, key_hash: str) -> int | None:
    with db.core_reading() as connection:
        return connection.execute(_TEAM_FOR_HASH, {"key_hash": key_hash}).scalar()


class KeyCache:
    """Teams of recently seen keys, so a client polling many times a second costs one lookup
    per `ttl_seconds`. Only hits are kept: an unknown key is looked up every time."""

    def __init__(self, db: Database, ttl_seconds: float = 60.0, max_keys: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._monotonic = monotonic
        self._ttl = ttl_seconds
        self._max_keys = max_keys
        self._teams: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def team_for_key(self, key: str) -> int | None:
        digest = hash_key(key)
        now = self._monotonic()
        with self._lock:
            cached = self._teams.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        team_id = _team_for_hash(self._db, digest)
        if team_id is not None:
            with self._lock:
                if len(self._teams) >= self._max_keys:
                    self._teams.clear()
                self._teams[digest] = (team_id, now + self._ttl)
        return team_id


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
