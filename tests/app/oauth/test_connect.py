"""OAuth2 through the API: single connect and /test refresh before probing, store the new
tokens, and never show a token."""

import datetime as dt

from sqlalchemy import select, update

from app.credentials import Secret
from app.importing.rows import ACCESS_TOKEN, EXPIRES_AT, REFRESH_TOKEN
from app.models import EmailAccount
from app.oauth.apps import set_oauth_app
from app.probe.model import AuthMethod
from app.teams import team_for_key
from tests.app.jobs.doubles import FakeProber
from tests.servers.oauth_server import running_oauth_server


def stored_tokens(services) -> dict[str, Secret]:
    with services.db.reading() as session:
        return services.cipher.decrypt(session.scalar(select(EmailAccount.credentials)))


def test_single_connect_and_retest_refresh_the_token_and_never_return_it(
        services, client, api_key):
    prober = FakeProber()
    services.prober = prober
    headers = {"x-api-key": api_key}
    with running_oauth_server() as server:
        set_oauth_app(services.db, services.cipher, services.clock,
                      team_for_key(services.db, api_key), "google", server.client_id,
                      Secret(server.client_secret), token_url=server.url)
        first = server.grant("gil@gmail.com")
        answer = client.post("/v1/email-accounts/smtp-imap/connect", headers=headers, json={
            "smtpEmailAddress": "gil@gmail.com", "authType": "oauth2", "oauth2Provider": "google",
            "oauth2RefreshToken": first})
        assert answer.status_code == 200, answer.json
        assert answer.json["payload"]["status"] == 1
        [(smtp, imap)] = prober.calls
        assert smtp.auth == AuthMethod.OAUTH2 and smtp.host == "smtp.gmail.com"
        assert smtp.password == imap.password == Secret(server.issued[0])
        tokens = stored_tokens(services)
        assert tokens[ACCESS_TOKEN] == Secret(server.issued[0])
        account_id = answer.json["payload"]["id"]
        shown = client.get(f"/v1/email-accounts/{account_id}", headers=headers)
        for response in (answer, shown):
            for secret in (first, server.issued[0], tokens[REFRESH_TOKEN].reveal()):
                assert secret not in response.get_data(as_text=True)

        # Due within 5 minutes: /test refreshes first, and keeps the rotated refresh token.
        soon = (services.clock.now() + dt.timedelta(minutes=4)).isoformat()
        with services.db.transaction() as session:
            session.execute(update(EmailAccount).values(credentials=services.cipher.encrypt(
                {**tokens, EXPIRES_AT: Secret(soon)})))
        tested = client.post(f"/v1/email-accounts/{account_id}/test", headers=headers)
        assert tested.status_code == 200 and tested.json["payload"]["status"] == 1
        assert prober.calls[-1][0].password == Secret(server.issued[1])
        again = stored_tokens(services)
        assert again[ACCESS_TOKEN] == Secret(server.issued[1])
        assert again[REFRESH_TOKEN] != tokens[REFRESH_TOKEN]

        # A PATCH keeps the token's expiry: due again, its test refreshes first too.
        soon = (services.clock.now() + dt.timedelta(minutes=2)).isoformat()
        with services.db.transaction() as session:
            session.execute(update(EmailAccount).values(credentials=services.cipher.encrypt(
                {**again, EXPIRES_AT: Secret(soon)})))
        patched = client.patch(f"/v1/email-accounts/{account_id}", headers=headers,
                               json={"fromName": "Gil"})
        assert patched.status_code == 200 and patched.json["payload"]["status"] == 1
        assert prober.calls[-1][0].password == Secret(server.issued[2])
        again = stored_tokens(services)
        assert again[ACCESS_TOKEN] == Secret(server.issued[2])

        # Consent revoked: the token endpoint's invalid_grant, with the hint to reconnect.
        server.revoke("gil@gmail.com")
        with services.db.transaction() as session:
            session.execute(update(EmailAccount).values(credentials=services.cipher.encrypt(
                {REFRESH_TOKEN: again[REFRESH_TOKEN]})))
        refused = client.post(f"/v1/email-accounts/{account_id}/test", headers=headers)
        smtp_view = refused.json["payload"]["smtpConnection"]
        assert smtp_view["errorCode"] == "oauth_refresh_failed"
        assert "invalid_grant" in smtp_view["error"] and "reconnect" in smtp_view["hint"]
        assert again[REFRESH_TOKEN].reveal() not in refused.get_data(as_text=True)
        assert len(prober.calls) == 3
