"""Browser consent (RFC 6749 section 4.1, with PKCE, RFC 7636): the authorisation URL a person
opens, the single-use state it carries, and the code the provider sends back, exchanged for
the mailbox's tokens at the team's token endpoint.

The state lives in the database (oauth_consents): claiming it is one conditional UPDATE, so a
state is used at most once even when two callbacks race, and its expiry follows the service
clock. Only its SHA-256 is stored, and the PKCE verifier is encrypted like a password.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import insert, select, update

from app.clock import Clock
from app.credentials import CredentialCipher, Secret
from app.db import Database, delete_in_batches
from app.importing.rows import (
    ACCESS_TOKEN,
    OAUTH2_PROVIDERS,
    REFRESH_TOKEN,
    AccountInput,
    FieldError,
    validate_row,
)
from app.jobs.webhooks import check_callback_url
from app.models import OAuthConsent
from app.oauth.apps import OAuthAppConfig
from app.oauth.tokens import PostForm, request_tokens
from app.outbound import post_checked
from app.probe.model import IPNetwork

consents = OAuthConsent.__table__

CONSENT_TTL = dt.timedelta(minutes=10)
SCOPES = {
    "google": "https://mail.google.com/ openid email",
    "microsoft": "offline_access https://outlook.office.com/SMTP.Send "
                 "https://outlook.office.com/IMAP.AccessAsUser.All",
}
# The row's server fields a consent may carry, for custom providers and custom domains.
SERVER_FIELDS = ("smtpHost", "smtpPort", "smtpEncryption", "imapHost", "imapPort",
                 "imapEncryption")
_VERIFIER = "codeVerifier"
# Stands in for the token at start, when only the server fields are being validated.
_NOT_YET = "consent-pending"


class ConsentError(ValueError):
    """A request the consent flow refuses; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ConsentStart:
    authorize_url: str
    state: str


@dataclass(frozen=True)
class PendingConsent:
    """A claimed state: everything start kept for its callback."""

    team_id: int
    provider: str
    email: str | None
    redirect_url: str
    server: dict[str, Any]
    code_verifier: Secret


def pkce_pair() -> tuple[Secret, str]:
    """A code verifier (64 unreserved characters, RFC 7636 section 4.1) and its S256
    challenge."""
    verifier = secrets.token_urlsafe(48)
    return Secret(verifier), s256(verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to whatever query it already has."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))


def consent_row(provider: str, email: str, server: dict[str, Any],
                tokens: dict[str, Secret]) -> dict[str, Any]:
    """The OAuth2 row a consent makes: the provider's preset hosts unless server fields were
    given."""
    return {"smtpEmailAddress": email, "authType": "oauth2", "oauth2Provider": provider,
            **server, **{name: tokens[name].reveal() for name in (ACCESS_TOKEN, REFRESH_TOKEN)
                         if name in tokens}}


def check_start(provider: Any, email: Any, server: dict[str, Any], redirect_url: Any,
                policy: Any = None) -> list[FieldError]:
    """What is wrong with a start request, field by field."""
    if provider not in OAUTH2_PROVIDERS:
        return [FieldError("provider", f"must be one of {', '.join(OAUTH2_PROVIDERS)}")]
    errors = []
    if not isinstance(redirect_url, str):
        errors.append(FieldError("redirectUrl", "is required (an http or https URL)"))
    else:
        try:
            check_callback_url(redirect_url)
        except ValueError as exc:
            errors.append(FieldError("redirectUrl", str(exc)))
    if email is not None and not isinstance(email, str):
        errors.append(FieldError("email", "must be a string"))
    if provider == "custom" and not server.get("smtpHost"):
        errors.append(FieldError("smtpHost", "is required for a custom provider"))
    if errors:
        return errors
    # Validated as the row the callback will save, with a placeholder for the token it will
    # have; without an email yet, one at the SMTP host (or the provider's) stands in.
    stand_in = email or f"consent@{server.get('smtpHost') or provider + '.example'}"
    checked = validate_row(consent_row(provider, stand_in, server,
                                       {ACCESS_TOKEN: Secret(_NOT_YET)}), policy=policy)
    if isinstance(checked, AccountInput):
        return []
    # An error of the stand-in email is nobody's; one of the caller's email is theirs.
    return [FieldError("email", e.message) if e.field == "smtpEmailAddress" else e
            for e in checked if email or e.field != "smtpEmailAddress"]


def start_consent(db: Database, cipher: CredentialCipher, clock: Clock, app: OAuthAppConfig,
                  redirect_url: str, callback_url: str, *, email: str | None = None,
                  server: dict[str, Any] | None = None, custom_scope: str = "") -> ConsentStart:
    """Keep a new state for the team's consent and give the URL the person opens."""
    state = secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    now = clock.now()
    with db.core_transaction() as connection:
        connection.execute(insert(consents).values(
            state_hash=_state_hash(state), team_id=app.team_id, provider=app.provider,
            email=email or None, redirect_url=redirect_url, server=server or None,
            code_verifier=cipher.encrypt({_VERIFIER: verifier}), created_at=now,
            expires_at=now + CONSENT_TTL))
    params = {"response_type": "code", "client_id": app.client_id,
              "redirect_uri": callback_url,
              "scope": SCOPES.get(app.provider, custom_scope),
              "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
    if app.provider == "google":
        # Without these Google gives no refresh token, and none again on a second consent.
        params.update(access_type="offline", prompt="consent")
    if email:
        params["login_hint"] = email
    return ConsentStart(with_query(app.authorize_url, params), state)


def claim_consent(db: Database, cipher: CredentialCipher, clock: Clock, state: str
                  ) -> PendingConsent:
    """The consent this state was given for, marked used: ConsentError("state") when it is
    unknown, expired or already used. The one conditional UPDATE makes it single use even
    between racing callbacks."""
    now = clock.now()
    digest = _state_hash(state)
    with db.core_transaction() as connection:
        claimed = connection.execute(update(consents).where(
            consents.c.state_hash == digest, consents.c.used_at.is_(None),
            consents.c.expires_at > now).values(used_at=now)).rowcount
        row = connection.execute(select(consents).where(
            consents.c.state_hash == digest)).one_or_none() if claimed == 1 else None
    if row is None:
        raise ConsentError("state", "is unknown, expired or already used: start the consent "
                                    "again")
    return PendingConsent(row.team_id, row.provider, row.email, row.redirect_url,
                          dict(row.server or {}),
                          cipher.decrypt(row.code_verifier)[_VERIFIER])


def exchange_code(app: OAuthAppConfig, pending: PendingConsent, code: Secret,
                  callback_url: str, now: dt.datetime, post: PostForm = post_checked,
                  timeout: float = 10.0, allow: Iterable[IPNetwork] = ()
                  ) -> tuple[dict[str, Secret], str | None]:
    """grant_type=authorization_code with the PKCE verifier: the mailbox's tokens and the
    email the answer's id_token names (None without one). RefreshFailed when refused."""
    tokens, answer = request_tokens(
        app, "authorization_code",
        {"code": code, "code_verifier": pending.code_verifier,
         "redirect_uri": Secret(callback_url)},
        now, "authorization code", post, timeout, allow)
    return tokens, id_token_email(answer.get("id_token"))


def id_token_email(id_token: Any) -> str | None:
    """The `email` claim of an id_token, its signature unchecked. That is safe ONLY because
    the token came straight from the team's own token endpoint, in the answer to our request,
    over the outbound-policy-checked channel: nobody else could have put it there. Never use
    this on an id_token a client hands in."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) and email else None


def delete_expired_consents(db: Database, clock: Clock, batch: int = 1000) -> int:
    """Forget consents past their expiry, used or not (a state is good for 10 minutes at
    most), a batch at a time; returns how many went."""
    consents = OAuthConsent.__table__
    return delete_in_batches(db, consents, consents.c.expires_at < clock.now(), batch)
