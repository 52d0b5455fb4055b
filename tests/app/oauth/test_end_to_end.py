"""OAuth2 from the API to a real mail server: a refresh token at the team's token endpoint,
the access token it gives checked by Dovecot over XOAUTH2 on submission and IMAP."""

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.credentials import Secret
from app.importing.rows import ACCESS_TOKEN, EXPIRES_AT
from app.models import EmailAccount
from app.oauth.apps import set_oauth_app
from tests.servers.oauth_server import OAuthServer, running_oauth_server

pytestmark = pytest.mark.integration
EMAIL = "alice@example.test"


def oauth_row(server, refresh_token: str) -> dict:
    return {"smtpEmailAddress": EMAIL, "authType": "oauth2", "oauth2Provider": "custom",
            "oauth2RefreshToken": refresh_token,
            "smtpHost": "localhost", "smtpPort": server.submission_port,
            "smtpEncryption": "starttls",
            "imapHost": "localhost", "imapPort": server.imaps_port, "imapEncryption": "ssl"}


def expire_soon(services) -> None:
    with services.db.transaction() as session:
        tokens = services.cipher.decrypt(session.scalar(select(EmailAccount.credentials)))
        soon = (services.clock.now() + dt.timedelta(minutes=1)).isoformat()
        session.execute(update(EmailAccount).values(credentials=services.cipher.encrypt(
            {**tokens, EXPIRES_AT: Secret(soon)})))


def test_refresh_then_xoauth2_login_then_revoked_consent(client, api_key, real_services, team,
                                                        mail_server):
    if mail_server.tokens is None:
        pytest.skip("needs Dovecot's oauth2 passdb")  # pymap; CI requires Dovecot
    headers = {"x-api-key": api_key}
    with running_oauth_server(OAuthServer(mint=mail_server.tokens.mint)) as server:
        set_oauth_app(real_services.db, real_services.cipher, real_services.clock, team,
                      "custom", server.client_id, Secret(server.client_secret),
                      token_url=server.url, authorize_url=f"{server.url}/authorize")
        connected = client.post("/v1/email-accounts/smtp-imap/connect", headers=headers,
                                json=oauth_row(mail_server, server.grant(EMAIL)))
        assert connected.status_code == 200, connected.json
        payload = connected.json["payload"]
        assert payload["status"] == 1, payload
        assert payload["smtpConnection"]["success"] and payload["imapConnection"]["success"]
        account_id = payload["id"]

        # The mail server stops accepting the token it had: the next test, due for a refresh,
        # gets a new one and logs in with it.
        mail_server.tokens.revoke(server.issued[0])
        expire_soon(real_services)
        retested = client.post(f"/v1/email-accounts/{account_id}/test", headers=headers)
        assert retested.json["payload"]["status"] == 1, retested.json
        assert len(server.issued) == 2
        with real_services.db.reading() as session:
            stored = real_services.cipher.decrypt(session.scalar(select(EmailAccount.credentials)))
        assert stored[ACCESS_TOKEN] == Secret(server.issued[1])

        # Consent withdrawn: the refresh is refused, and that is the verdict.
        server.revoke(EMAIL)
        expire_soon(real_services)
        refused = client.post(f"/v1/email-accounts/{account_id}/test", headers=headers)
        verdict = refused.json["payload"]["smtpConnection"]
        assert refused.json["payload"]["status"] == 0
        assert verdict["errorCode"] == "oauth_refresh_failed"
        assert "invalid_grant" in verdict["error"]

        # A token the mail server refuses, with no refresh due: oauth_token_invalid from Dovecot.
        mail_server.tokens.revoke(server.issued[1])
        with real_services.db.transaction() as session:
            session.execute(update(EmailAccount).values(credentials=real_services.cipher.encrypt(
                {ACCESS_TOKEN: Secret(server.issued[1])})))
        invalid = client.post(f"/v1/email-accounts/{account_id}/test", headers=headers)
        codes = {invalid.json["payload"][f"{p}Connection"]["errorCode"] for p in ("smtp", "imap")}
        assert codes == {"oauth_token_invalid"}, invalid.json
