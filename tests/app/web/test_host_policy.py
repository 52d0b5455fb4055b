"""PROBE_BANNED_HOSTS and PROBE_ALLOWED_PORTS through the API: bulk rows, single connect, PATCH,
and the re-test of an account saved before its host was banned."""

import pytest
from sqlalchemy import func, select

from app.config import load_settings
from app.models import ConnectJobRow, EmailAccount
from app.probe import Prober
from app.teams import team_for_key
from tests.app.web.test_accounts import BASE, headers, mailbox, saved, single
from tests.factories import bulk_row

pytestmark = pytest.mark.integration


def with_policy(services, env, **policy: str) -> None:
    # Handlers read the settings on each request, as a redeployed web process would; the
    # prober is the real one, built from them.
    services.settings = load_settings(**{**env, **policy})
    services.prober = Prober(services.settings.probe_settings())


def accounts(services) -> int:
    with services.db.reading() as session:
        return session.scalar(select(func.count()).select_from(EmailAccount))


def test_bulk_rows_with_a_banned_host_or_port_are_invalid(client, api_key, services, env):
    with_policy(services, env, PROBE_BANNED_HOSTS="banned.example",
                PROBE_ALLOWED_PORTS="25,465,587,993")
    rows = [bulk_row("a@example.com", smtpHost="mail.banned.example"),
            bulk_row("b@example.com", imapPort=143, imapEncryption="tls"),
            bulk_row("c@example.com")]
    response = client.post(f"{BASE}/connect", json=rows, headers=headers(api_key))
    assert response.status_code == 200, response.json
    with services.db.reading() as session:
        found = dict(session.execute(select(ConnectJobRow.email, ConnectJobRow.field_errors)
                                     .where(ConnectJobRow.state == "invalid")).all())
    assert found == {
        "a@example.com": [{"field": "smtpHost", "message": "mail.banned.example is not allowed: "
                           "this service refuses banned.example and its subdomains"}],
        "b@example.com": [{"field": "imapPort", "message": "port 143 is not allowed (this "
                           "service connects to 25, 465, 587, 993)"}],
    }


def test_single_connect_refuses_a_banned_host_before_testing(client, api_key, services,
                                                              env, mail_server):
    with_policy(services, env, PROBE_BANNED_HOSTS="localhost",
                PROBE_ALLOWED_PORTS="1-65535")
    url = f"{BASE}/smtp-imap/connect"
    for dry_run in (False, True):
        response = client.post(url, json=single(mail_server, "alice@example.test", test=dry_run),
                               headers=headers(api_key))
        assert response.status_code == 422, response.json
        assert {e["field"]: e["message"] for e in response.json["errors"]} == {
            "payload.smtp.host": "localhost is not allowed: this service refuses localhost",
            "payload.imap.host": "localhost is not allowed: this service refuses localhost"}
    assert accounts(services) == 0


def test_single_connect_refuses_a_port_outside_the_list(client, api_key, services, env,
                                                        mail_server):
    with_policy(services, env, PROBE_ALLOWED_PORTS=str(mail_server.submission_port))
    response = client.post(f"{BASE}/smtp-imap/connect",
                           json=single(mail_server, "alice@example.test"),
                           headers=headers(api_key))
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["payload.imap.port"]
    assert str(mail_server.imaps_port) in response.json["errors"][0]["message"]
    assert accounts(services) == 0


def test_an_account_whose_host_was_banned_later(client, api_key, services, env, mail_server):
    with_policy(services, env)
    team = team_for_key(services.db, api_key)
    account_id = saved(services, team, mailbox(mail_server, "alice@example.test"))
    with_policy(services, env, PROBE_BANNED_HOSTS="localhost",
                PROBE_ALLOWED_PORTS="1-65535")
    url = f"{BASE}/{account_id}"

    # A connection change is validated as a whole account: refused, nothing changes.
    changed = client.patch(url, json={"smtpPassword": "new"}, headers=headers(api_key))
    assert changed.status_code == 422
    assert {e["field"] for e in changed.json["errors"]} == {"smtpHost", "imapHost"}
    # A sending-only change connects nowhere: the account can still be suspended.
    suspended = client.patch(url, json={"suspended": True}, headers=headers(api_key))
    assert suspended.status_code == 200, suspended.json

    # The re-test runs the probe, which refuses the stored host itself.
    tested = client.post(f"{url}/test", headers=headers(api_key)).json["payload"]
    assert tested["status"] == 0
    for side in ("smtpConnection", "imapConnection"):
        assert tested[side]["errorCode"] == "host_blocked"
        assert "localhost is not allowed" in tested[side]["error"]
