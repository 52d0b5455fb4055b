"""Teams and their API keys. Only a SHA-256 of each key is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from app.clock import Clock
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


def team_for_key(db: Database, key: str) -> int | None:
    with db.reading() as session:
        return session.scalar(select(ApiKey.team_id).where(ApiKey.key_hash == hash_key(key)))
