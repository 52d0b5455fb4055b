"""Idempotency-Key: the same key with the same request gets the same job for 24 hours.

A client that times out and sends its batch again must not create a second job. The key is
stored in the job's own transaction, under a unique (team, key) constraint, so of two
concurrent requests with one key only one job commits and the other reads the winner's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.db import Database, delete_in_batches
from app.models import IdempotencyKey

MAX_KEY_LENGTH = 255
KEY_TTL = dt.timedelta(hours=24)
keys = IdempotencyKey.__table__


class IdempotencyMismatch(Exception):
    """The key was used before for a different request."""


@dataclass(frozen=True)
class RequestKey:
    key: str
    request_hash: str


def request_hash(method: str, path: str, content_type: str, body: bytes) -> str:
    """What makes two requests the same one. Lengths are framed, so no two splits collide."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), content_type.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_key(value: str) -> str:
    """The key as given; ValueError says what is wrong with it."""
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"is too long (at most {MAX_KEY_LENGTH} characters)")
    return value


def replayed_job(db: Database, now: dt.datetime, team_id: int, request_key: RequestKey
                 ) -> str | None:
    """The job an earlier request with this key created, or None when there is none alive.

    Raises IdempotencyMismatch when the key was used for another request."""
    with db.reading() as session:
        row = session.execute(
            select(keys.c.request_hash, keys.c.job_id)
            .where(keys.c.team_id == team_id, keys.c.key == request_key.key,
                   keys.c.created_at >= now - KEY_TTL)
        ).one_or_none()
    if row is None:
        return None
    if row.request_hash != request_key.request_hash:
        raise IdempotencyMismatch(request_key.key)
    return row.job_id


def remember_key(session: Session, now: dt.datetime, team_id: int, request_key: RequestKey,
                 job_id: str) -> None:
    """Store the key with its job, in the job's transaction; IntegrityError if another request
    holds it (on PostgreSQL after waiting for that request's transaction to end)."""
    # An expired key is free again: the earlier request it belonged to is forgotten.
    session.execute(delete(keys).where(keys.c.team_id == team_id, keys.c.key == request_key.key,
                                       keys.c.created_at < now - KEY_TTL))
    session.add(IdempotencyKey(team_id=team_id, key=request_key.key,
                               request_hash=request_key.request_hash, job_id=job_id,
                               created_at=now))
    session.flush()


def delete_expired_keys(db: Database, clock: Clock, batch: int = 1000) -> int:
    """Forget keys older than 24 hours, a batch at a time; returns how many went."""
    return delete_in_batches(db, keys, keys.c.created_at < clock.now() - KEY_TTL, batch)
