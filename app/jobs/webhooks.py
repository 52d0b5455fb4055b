"""Webhooks: when a job ends, POST its status payload to the job's callback URL, signed.

`Mailconnect-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the team's
secret, as Stripe signs its events. A callback URL comes from users, so delivery passes the
probes' outbound policy: resolve once, refuse any non-public address unless allow-listed, and
connect to the checked address (no DNS-rebinding window). Failures, 5xx answers and timeouts
are retried with exponential backoff; every attempt is recorded on the job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select, update

from app.clock import Clock
from app.credentials import CredentialCipher, Secret
from app.db import Database
from app.jobs.status import error_counts, status_payload, view_of
from app.models import TERMINAL_JOB_STATES, ConnectJob
from app.outbound import DeliveryError, post_checked
from app.probe.model import IPNetwork
from app.storage import ReportStore
from app.teams import webhook_secret

log = logging.getLogger(__name__)
jobs = ConnectJob.__table__

MAX_URL_LENGTH = 2048
SIGNATURE_HEADER = "Mailconnect-Signature"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# Answers worth another try: the receiver is down, overloaded or asks us to slow down.
RETRYABLE_STATUS = frozenset({408, 425, 429})


def check_callback_url(url: str) -> str:
    """The URL if a webhook can be sent to it; ValueError says why not."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"is too long (at most {MAX_URL_LENGTH} characters)")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must name a host")
    return url


def signature_header(secret: Secret, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.reveal().encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


Post = Callable[[str, bytes, dict[str, str], float, Iterable[IPNetwork]], int]


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float,
              allow: Iterable[IPNetwork] = ()) -> int:
    """POST under the outbound network policy; the answer's status code."""
    return post_checked(url, body, headers, timeout, allow, truncate=True)[0]


@dataclass(frozen=True)
class WebhookPolicy:
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    allow_networks: tuple[IPNetwork, ...] = ()
    url_ttl_seconds: int = 3600
    retention_days: float = 7.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))

    @property
    def patience_seconds(self) -> float:
        """How long every attempt and backoff of one delivery can take: a webhook still owed
        after that lost its message."""
        backoffs = sum(self.delay(n) for n in range(1, self.max_attempts))
        return backoffs + self.max_attempts * self.timeout_seconds * 3


def owed_webhooks(db: Database, clock: Clock, policy: WebhookPolicy, limit: int = 100
                  ) -> list[str]:
    """Jobs whose webhook is still pending long after they ended (its message was lost), for
    the sweeper to announce again. Attempts stay counted, so this never exceeds the limit."""
    cutoff = clock.now() - dt.timedelta(seconds=policy.patience_seconds)
    with db.reading() as session:
        return list(session.scalars(
            select(jobs.c.id)
            .where(jobs.c.webhook_state == PENDING, jobs.c.completed_at < cutoff,
                   jobs.c.webhook_attempts < policy.max_attempts)
            .order_by(jobs.c.completed_at).limit(limit)))


def deliver_webhook(db: Database, cipher: CredentialCipher, clock: Clock, store: ReportStore,
                    policy: WebhookPolicy, job_id: str, post: Post = post_json
                    ) -> float | None:
    """Make one delivery attempt if the job owes one; seconds until the next, or None when
    there is nothing more to do (delivered, given up, or nothing owed)."""
    with db.transaction() as session:
        # Counting the attempt before making it: a redelivered message cannot exceed the limit.
        attempt = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.webhook_state == PENDING,
                   jobs.c.callback_url.is_not(None),
                   jobs.c.webhook_attempts < policy.max_attempts,
                   jobs.c.status.in_(sorted(TERMINAL_JOB_STATES)))
            .values(webhook_attempts=jobs.c.webhook_attempts + 1)
            .returning(jobs.c.webhook_attempts)
        ).scalar()
        if attempt is None:
            return None
        row = session.execute(select(jobs).where(jobs.c.id == job_id)).one()
        counts = dict(session.execute(
            select(error_counts.c.code, error_counts.c.count)
            .where(error_counts.c.job_id == job_id, error_counts.c.count > 0)
            .order_by(error_counts.c.code)).all())
    payload = status_payload(view_of(row, counts), store, clock, policy.url_ttl_seconds,
                             policy.retention_days)
    body = json.dumps({"payload": payload}, separators=(",", ":")).encode()
    secret = webhook_secret(db, cipher, row.team_id)
    timestamp = int(clock.now().timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": "mailconnect-webhook",
               SIGNATURE_HEADER: signature_header(secret, timestamp, body)}
    try:
        status = post(row.callback_url, body, headers, policy.timeout_seconds,
                      policy.allow_networks)
        if 200 <= status < 300:
            _record(db, job_id, DELIVERED, None, clock)
            return None
        error = DeliveryError(f"the callback answered HTTP {status}",
                              retryable=status >= 500 or status in RETRYABLE_STATUS)
    except DeliveryError as exc:
        error = exc
    final = not error.retryable or attempt >= policy.max_attempts
    _record(db, job_id, FAILED if final else PENDING, str(error), clock)
    log.info("webhook of job %s, attempt %d: %s", job_id, attempt, error)
    return None if final else policy.delay(attempt)


def _record(db: Database, job_id: str, state: str, error: str | None, clock: Clock) -> None:
    values: dict = {"webhook_state": state, "webhook_error": error}
    if state == DELIVERED:
        values["webhook_delivered_at"] = clock.now()
    with db.transaction() as session:
        session.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.webhook_state == PENDING)
                        .values(**values))
