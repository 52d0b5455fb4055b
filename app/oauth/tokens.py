"""The token endpoint client: a new access token from a refresh token, before a probe.

An access token that is missing, or expires within REFRESH_MARGIN, is refreshed at the team's
OAuth app's token endpoint (RFC 6749 section 6). The endpoint's refusal is final (the row is
`oauth_refresh_failed`, its words scrubbed); its being unreachable is transient, retried like a
mail server's connection errors. The request passes the outbound network policy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from app.clock import Clock
from app.credentials import CredentialCipher, CredentialError, Secret
from app.db import Database
from app.importing.rows import ACCESS_TOKEN, EXPIRES_AT, REFRESH_TOKEN
from app.oauth.apps import OAuthAppConfig, load_oauth_app
from app.oauth.flights import LocalFlights, RefreshBusy, Refreshed, RefreshFlights
from app.outbound import DeliveryError, post_checked
from app.probe.model import AccountProbe, ErrorCode, IPNetwork, ProtocolResult
from app.probe.scrub import Scrubber, one_line

REFRESH_MARGIN = dt.timedelta(minutes=5)
TOKEN_ENDPOINT_TIMEOUT = 10.0
# Answers worth another try: the endpoint is down, overloaded or asks us to slow down.
_RETRYABLE_STATUS = frozenset({408, 425, 429})

PostForm = Callable[[str, bytes, dict[str, str], float, Iterable[IPNetwork]], tuple[int, bytes]]


class RefreshFailed(Exception):
    """No fresh access token. `transient`: the endpoint could not be reached (try again
    later); otherwise it refused, or no app is registered, and only a person can fix it."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def needs_refresh(tokens: dict[str, Secret], now: dt.datetime) -> bool:
    return not tokens.get(ACCESS_TOKEN) or seconds_of_use(tokens, now) <= 0


def seconds_of_use(tokens: dict[str, Secret], now: dt.datetime) -> float:
    """How long the access token stays usable before it is due for a refresh. A token given
    without its expiry never is: it is used as it is, and the mail server judges it."""
    expires = tokens.get(EXPIRES_AT)
    if not expires:
        return float("inf")
    return (dt.datetime.fromisoformat(expires.reveal()) - REFRESH_MARGIN - now).total_seconds()


def request_refresh(app: OAuthAppConfig, refresh_token: Secret, now: dt.datetime,
                    post: PostForm = post_checked, timeout: float = 10.0,
                    allow: Iterable[IPNetwork] = ()) -> dict[str, Secret]:
    """grant_type=refresh_token at the app's token endpoint: the new tokens (with the refresh
    token only when the endpoint rotated it). RefreshFailed otherwise."""
    tokens, _answer = request_tokens(app, "refresh_token", {"refresh_token": refresh_token},
                                     now, "refresh", post, timeout, allow)
    return tokens


def request_tokens(app: OAuthAppConfig, grant_type: str, grant: dict[str, Secret],
                   now: dt.datetime, what: str, post: PostForm = post_checked,
                   timeout: float = 10.0, allow: Iterable[IPNetwork] = ()
                   ) -> tuple[dict[str, Secret], dict]:
    """One grant at the app's token endpoint (`what` names it in errors): its tokens, and the
    whole JSON answer (for claims such as an id_token). RefreshFailed otherwise, with every
    secret of the grant scrubbed from the endpoint's words."""
    form = {name: value.reveal() for name, value in grant.items()}
    body = urlencode({"grant_type": grant_type, **form, "client_id": app.client_id,
                      "client_secret": app.client_secret.reveal()}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Accept": "application/json", "User-Agent": "mailconnect-oauth"}
    try:
        status, answer = post(app.token_url, body, headers, timeout, allow)
    except DeliveryError as exc:
        raise RefreshFailed(f"token endpoint {app.token_url} unreachable: {exc}",
                            transient=exc.retryable) from None
    scrub = _scrubber(*grant.values(), app.client_secret)
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise RefreshFailed(f"token endpoint answered HTTP {status}", transient=True)
    access = data.get("access_token")
    if status != 200 or not isinstance(access, str) or not access:
        words = ": ".join(str(data[k]) for k in ("error", "error_description") if data.get(k))
        raise RefreshFailed(scrub(f"token endpoint refused the {what} (HTTP {status})"
                                  + (f": {words}" if words else "")))
    tokens = {ACCESS_TOKEN: Secret(access)}
    if isinstance(data.get("refresh_token"), str) and data["refresh_token"]:
        tokens[REFRESH_TOKEN] = Secret(data["refresh_token"])
    expires_in = data.get("expires_in")
    if isinstance(expires_in, int | float | str) and str(expires_in).isdigit():
        tokens[EXPIRES_AT] = Secret((now + dt.timedelta(seconds=int(expires_in))).isoformat())
    return tokens, data


def _scrubber(*secrets: Secret) -> Callable[[str], str]:
    scrubbers = [Scrubber("", s) for s in secrets]

    def clean(text: str) -> str:
        for scrubber in scrubbers:
            text = scrubber.scrub(text)
        return one_line(text)
    return clean


@dataclass(frozen=True)
class TokenRefresher:
    """Refreshes an OAuth2 account's tokens when they are due, with its team's app."""

    db: Database
    cipher: CredentialCipher
    clock: Clock
    timeout_seconds: float = TOKEN_ENDPOINT_TIMEOUT
    allow_networks: tuple[IPNetwork, ...] = ()
    post: PostForm = field(default=post_checked)
    flights: RefreshFlights = field(default_factory=LocalFlights)

    def fresh(self, team_id: int, provider: str | None, tokens: dict[str, Secret]
              ) -> dict[str, Secret] | None:
        """The account's tokens after a refresh, or None when none was due.
        RefreshFailed when one was due and could not be had."""
        now = self.clock.now()
        if not needs_refresh(tokens, now):
            return None
        refresh_token = tokens.get(REFRESH_TOKEN)
        if not refresh_token:
            raise RefreshFailed("the access token is missing or expired and there is no "
                                "refresh token: reconnect the mailbox")
        try:
            app = load_oauth_app(self.db, self.cipher, team_id, provider or "custom")
        except CredentialError as exc:
            raise RefreshFailed(f"the team's OAuth app secret cannot be read: {exc}") from None
        if app is None:
            raise RefreshFailed(f"no OAuth app is registered for this team and provider "
                                f"{provider or 'custom'} (mailconnect oauth-app set)")

        def refresh() -> Refreshed:
            new = request_refresh(app, refresh_token, now, self.post, self.timeout_seconds,
                                  self.allow_networks)
            return Refreshed(new, seconds_of_use(new, now))

        try:
            # Once per token: a holder of the same token meanwhile gets these same tokens.
            new = self.flights.once(refresh_token, refresh)
        except RefreshBusy as exc:
            raise RefreshFailed(str(exc), transient=True) from None
        kept = {k: v for k, v in tokens.items() if k != EXPIRES_AT}
        return {**kept, **new}


def refresh_failure(exc: RefreshFailed, tests_imap: bool) -> AccountProbe:
    """The verdict of an account whose token could not be refreshed: nothing was tested."""
    failure = ProtocolResult("failed", ErrorCode.OAUTH_REFRESH_FAILED, str(exc), attempts=0)
    return AccountProbe(smtp=failure, imap=failure if tests_imap else ProtocolResult.skipped(),
                        duration_ms=0)
