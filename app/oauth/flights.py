"""One refresh per refresh token at a time, across every worker and web process.

Providers that rotate refresh tokens hand each one out for a single use: the test server here
forgets a token once it is used, and Okta and Auth0 revoke the whole grant when a rotated
token comes back. Two tests of one mailbox refreshing at the same moment (a job's re-test and
a user's /test), or a job row still carrying a token that a finished refresh rotated, would
send the same token twice, and the second would be refused: the mailbox then fails with
`oauth_refresh_failed` although nothing is wrong with it. So a refresh holds a lock named by
its token's hash and keeps what it got, encrypted, while its access token is still good for
use (at most KEEP_SECONDS): the next holder of the same token takes those tokens instead of
sending it again. A refusal is never kept.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple, Protocol

import redis

from app.credentials import CredentialCipher, CredentialError, Secret

KEY_PREFIX = "mailconnect:oauth-refresh"
# The longest a refresh's tokens answer for the token it spent.
KEEP_SECONDS = 3600.0
POLL_SECONDS = 0.05

Tokens = dict[str, Secret]


class Refreshed(NamedTuple):
    tokens: Tokens
    # How long they may answer for the spent token: while the access token has time left.
    keep_seconds: float


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RefreshBusy(Exception):
    """Another process's refresh of this token outlasted the wait."""


class RefreshFlights(Protocol):
    def once(self, refresh_token: Secret, refresh: Callable[[], Refreshed]) -> Tokens:
        """The tokens `refresh_token` was exchanged for: kept from an earlier refresh, or got
        by calling `refresh` while no one else refreshes the same token."""
        ...


def token_digest(refresh_token: Secret) -> str:
    return hashlib.sha256(refresh_token.reveal().encode()).hexdigest()


class LocalFlights:
    """Within one process, one refresh at a time: for tests."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, Tokens]] = {}
        self._lock = threading.Lock()

    def once(self, refresh_token: Secret, refresh: Callable[[], Refreshed]) -> Tokens:
        digest = token_digest(refresh_token)
        with self._lock:
            now = time.monotonic()
            self._kept = {d: k for d, k in self._kept.items() if k[0] > now}
            if digest in self._kept:
                return self._kept[digest][1]
            tokens, keep_seconds = refresh()
            self._kept[digest] = (time.monotonic() + min(keep_seconds, KEEP_SECONDS), tokens)
            return tokens


class RedisFlights:
    """Across processes: a lock per token (SET NX with an expiry, so a dead holder's lock
    lapses), and its outcome kept encrypted under CREDENTIALS_KEYS."""

    def __init__(self, client: redis.Redis, cipher: CredentialCipher, wait_seconds: float
                 ) -> None:
        self._client = client
        self._cipher = cipher
        self._wait_seconds = wait_seconds
        self._release = client.register_script(_RELEASE)

    def once(self, refresh_token: Secret, refresh: Callable[[], Refreshed]) -> Tokens:
        digest = token_digest(refresh_token)
        lock, kept_key = f"{KEY_PREFIX}:{digest}:lock", f"{KEY_PREFIX}:{digest}:kept"
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + self._wait_seconds
        while True:
            kept = self._kept(kept_key)
            if kept is not None:
                return kept
            # The lock outlives one refresh's whole wait, so it never lapses mid-refresh.
            if self._client.set(lock, holder, nx=True, px=int(self._wait_seconds * 1000)):
                break
            if time.monotonic() >= deadline:
                raise RefreshBusy("another refresh of this token is still running")
            time.sleep(POLL_SECONDS)
        try:
            kept = self._kept(kept_key)  # finished between our look and our lock
            if kept is not None:
                return kept
            tokens, keep_seconds = refresh()
            keep_ms = int(min(keep_seconds, KEEP_SECONDS) * 1000)
            if keep_ms > 0:
                self._client.set(kept_key, self._cipher.encrypt(tokens), px=keep_ms)
            return tokens
        finally:
            self._release(keys=[lock], args=[holder])

    def _kept(self, key: str) -> Tokens | None:
        sealed = self._client.get(key)
        if sealed is None:
            return None
        try:
            return self._cipher.decrypt(sealed.decode())
        except CredentialError:
            return None  # sealed under a key since retired: refresh as if nothing was kept
