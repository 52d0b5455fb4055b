"""Each team's own OAuth application per provider: client id, encrypted client secret, and the
token and authorisation endpoints (Google's and Microsoft's unless overridden)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.clock import Clock
from app.credentials import CredentialCipher, Secret
from app.db import Database
from app.importing.rows import OAUTH2_PROVIDERS
from app.jobs.webhooks import check_callback_url
from app.models import OAuthApp

apps = OAuthApp.__table__
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105
GOOGLE_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
MICROSOFT_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/{endpoint}"


@dataclass(frozen=True)
class OAuthAppConfig:
    team_id: int
    provider: str
    client_id: str
    client_secret: Secret
    token_url: str
    authorize_url: str
    tenant: str | None = None


def default_urls(provider: str, tenant: str | None) -> tuple[str | None, str | None]:
    """The provider's token and authorisation URLs; None for a custom provider's."""
    if provider == "google":
        return GOOGLE_TOKEN_URL, GOOGLE_AUTHORIZE_URL
    if provider == "microsoft":
        return tuple(MICROSOFT_URL.format(tenant=tenant or "common", endpoint=e)  # type: ignore[return-value]
                     for e in ("token", "authorize"))
    return None, None


def set_oauth_app(db: Database, cipher: CredentialCipher, clock: Clock, team_id: int,
                  provider: str, client_id: str, client_secret: Secret, *,
                  tenant: str | None = None, token_url: str | None = None,
                  authorize_url: str | None = None) -> OAuthAppConfig:
    """Register (or replace) the team's app of this provider. ValueError names what is wrong.

    The URLs are only checked for form here: every request to them passes the outbound network
    policy, as webhooks do."""
    if provider not in OAUTH2_PROVIDERS:
        raise ValueError(f"provider: must be one of {', '.join(OAUTH2_PROVIDERS)}")
    if not client_id.strip():
        raise ValueError("client-id: is required")
    if not client_secret:
        raise ValueError("client-secret: is required")
    default_token, default_authorize = default_urls(provider, tenant)
    urls = {"token-url": token_url or default_token,
            "authorize-url": authorize_url or default_authorize}
    for name, url in urls.items():
        if url is None:
            raise ValueError(f"{name}: is required for a custom provider")
        try:
            check_callback_url(url)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    app = OAuthAppConfig(team_id, provider, client_id.strip(), client_secret,
                         urls["token-url"] or "", urls["authorize-url"] or "", tenant)
    now = clock.now()
    values = {"client_id": app.client_id, "tenant": tenant, "token_url": app.token_url,
              "authorize_url": app.authorize_url,
              "client_secret": cipher.encrypt({"clientSecret": client_secret}),
              "updated_at": now}
    with db.core_transaction() as connection:
        insert = _INSERTS[connection.dialect.name](apps).values(
            team_id=team_id, provider=provider, created_at=now, **values)
        connection.execute(insert.on_conflict_do_update(
            index_elements=["team_id", "provider"], set_=values))
    return app


def load_oauth_app(db: Database, cipher: CredentialCipher, team_id: int, provider: str
                   ) -> OAuthAppConfig | None:
    """The team's app of this provider; None when it has registered none.
    CredentialError when its secret cannot be decrypted."""
    with db.core_reading() as connection:
        row = connection.execute(select(apps).where(apps.c.team_id == team_id,
                                                    apps.c.provider == provider)).one_or_none()
    if row is None:
        return None
    secret = cipher.decrypt(row.client_secret)["clientSecret"]
    return OAuthAppConfig(row.team_id, row.provider, row.client_id, secret, row.token_url,
                          row.authorize_url, row.tenant)
