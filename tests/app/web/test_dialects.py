"""Smartlead, MailReach and lemlist clients against the real Dovecot, with each seed document's
own example body pointed at the test server and its mailboxes."""

import base64

import pytest

from tests.app.dialects.seeds import LEMLIST_SEED, MAILREACH_SEED, SMARTLEAD_SEED
from tests.conftest import USERS

pytestmark = pytest.mark.integration
SMARTLEAD, MAILREACH, LEMLIST = "/api/v1/email-accounts/save", "/v1/imap_auth", \
    "/api/user/email-accounts"


def basic(key, user=""):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def stored(client, key, account_id):
    response = client.get(f"/v1/email-accounts/{account_id}", headers={"x-api-key": key})
    assert response.status_code == 200, response.json
    return response.json["payload"]


def smartlead_body(server, email="alice@example.test", password=None, **changes):
    return {**SMARTLEAD_SEED, "from_email": email, "user_name": email,
            "password": password or USERS[email], "smtp_host": "localhost",
            "smtp_port": server.submission_port, "imap_host": "localhost",
            "imap_port": server.imaps_port, **changes}


def test_smartlead_save_creates_updates_and_keeps_a_failed_account(client, api_key, team,
                                                                   mail_server):
    response = client.post(SMARTLEAD, json=smartlead_body(mail_server),
                           query_string={"api_key": api_key})
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["ok"], body["message"]) == (True, "Email account added successfully")
    data = body["data"]
    assert (data["from_email"], data["is_smtp_success"], data["is_imap_success"]) == (
        "alice@example.test", True, True)
    assert data["warmup_details"] == {"status": "ACTIVE", "total_warmup_per_day": 20}
    assert body["mailconnect"]["ignoredFields"] == []
    account = stored(client, api_key, data["id"])
    assert account["status"] == 1 and account["emailServiceProvider"] == "gmail"
    assert account["sending"]["maxEmailPerDay"] == 50
    assert account["sending"]["minDelayMinutes"] == 5

    update = smartlead_body(mail_server, id=data["id"], max_email_per_day=80,
                            warmup_enabled=False)
    response = client.post(SMARTLEAD, json=update, query_string={"api_key": api_key})
    assert response.status_code == 200, response.json
    assert response.json["message"] == "Email account updated successfully"
    assert response.json["data"]["warmup_details"]["status"] == "INACTIVE"
    assert stored(client, api_key, data["id"])["sending"]["maxEmailPerDay"] == 80

    wrong = smartlead_body(mail_server, "bob@example.test", password="wrong")
    response = client.post(SMARTLEAD, json=wrong, query_string={"api_key": api_key})
    assert response.status_code == 400, response.json
    assert response.json["ok"] is False and response.json["data"]["is_smtp_success"] is False
    assert stored(client, api_key, response.json["data"]["id"])["status"] == 0

    moved = smartlead_body(mail_server, "carol@example.test", id=data["id"])
    response = client.post(SMARTLEAD, json=moved, query_string={"api_key": api_key})
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "from_email"
    response = client.post(SMARTLEAD, json=smartlead_body(mail_server, id=10**6),
                           query_string={"api_key": api_key})
    assert response.status_code == 422 and response.json["message"].startswith("id:")


def test_smartlead_refusals_in_its_shape(client, api_key, team, mail_server):
    for query in ({}, {"api_key": "mc_wrong"}):
        response = client.post(SMARTLEAD, json=smartlead_body(mail_server), query_string=query,
                               headers={"x-api-key": api_key})  # Smartlead's key is the query's
        assert response.status_code == 401, response.json
        assert response.json["ok"] is False and response.json["message"].startswith("api_key:")
    bad = smartlead_body(mail_server, smtp_port="abc")
    del bad["from_name"]
    response = client.post(SMARTLEAD, json=bad, query_string={"api_key": api_key})
    assert response.status_code == 422 and response.json["ok"] is False
    assert [e["field"] for e in response.json["errors"]] == ["from_name"]
    response = client.post(SMARTLEAD, json=smartlead_body(mail_server, smtp_port="abc"),
                           query_string={"api_key": api_key})
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["smtp_port"]
    response = client.post(SMARTLEAD, data="{", content_type="application/json",
                           query_string={"api_key": api_key})
    assert response.status_code == 400 and response.json["message"].startswith("body:")


def mailreach_body(server, email="alice@example.test", password=None):
    password = password or USERS[email]
    return {**MAILREACH_SEED, "email": email, "password": password, "first_name": "John",
            "last_name": "Doe", "imap_server": "localhost",
            "imap_server_port": server.imaps_port, "imap_server_username": email,
            "imap_server_password": password, "smtp_server": "localhost",
            "smtp_server_port": server.submission_port, "smtp_server_username": email,
            "smtp_server_password": password}


def test_mailreach_imap_auth_creates_then_updates_by_email(client, api_key, team, mail_server):
    response = client.post(MAILREACH, json=mailreach_body(mail_server),
                           headers={"X-Api-Key": api_key})
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["email"], body["first_name"], body["provider"]) == (
        "alice@example.test", "John", "gmail")
    assert body["alive"] is True and body["smtp_only"] is True and body["imap_issue"] is False
    assert body["created_at"].endswith("Z")
    assert set(body["mailconnect"]["ignoredFields"]) == {
        "id", "smtp_server_auth_type", "imap_issue", "spamchecker_only", "test"}

    again = client.post("/api/v1/imap_auth", json=mailreach_body(mail_server, password="wrong"),
                        headers={"X-Api-Key": api_key})
    assert again.status_code == 200, again.json
    assert again.json["id"] == body["id"] and again.json["alive"] is False
    assert stored(client, api_key, body["id"])["status"] == 0


def test_mailreach_refusals_in_its_shape(client, api_key, team, mail_server):
    for headers in ({}, {"X-Api-Key": "mc_wrong"}):
        response = client.post(MAILREACH, json=mailreach_body(mail_server), headers=headers)
        assert response.status_code == 401
        assert response.json["message"].startswith("X-Api-Key:")
    body = {**mailreach_body(mail_server), "provider": "yahoo"}
    response = client.post(MAILREACH, json=body, headers={"X-Api-Key": api_key})
    assert response.status_code == 422 and list(response.json["errors"]) == ["provider"]
    body = {**mailreach_body(mail_server), "smtp_server_port": 0}
    response = client.post(MAILREACH, json=body, headers={"X-Api-Key": api_key})
    assert response.status_code == 422 and list(response.json["errors"]) == ["smtp_server_port"]


def lemlist_body(server, email="carol@example.test", password=None):
    password = password or USERS[email]
    return {**LEMLIST_SEED, "sender_email": email, "smtp_host": "localhost",
            "smtp_port": server.submission_port, "smtp_login": email, "smtp_password": password,
            "imap_host": "localhost", "imap_port": server.imaps_port, "imap_login": email,
            "imap_password": password}


def test_lemlist_connects_with_the_key_as_basic_password(client, api_key, team, mail_server):
    response = client.post(LEMLIST, json=lemlist_body(mail_server), headers=basic(api_key))
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["email"], body["provider"]) == ("carol@example.test", "custom")
    assert stored(client, api_key, int(body["id"]))["status"] == 1
    again = client.post(LEMLIST, json=lemlist_body(mail_server), headers=basic(api_key, "me"))
    assert again.status_code == 200 and again.json["id"] == body["id"]

    wrong = client.post(LEMLIST, json=lemlist_body(mail_server, "dave@example.test", "wrong"),
                        headers=basic(api_key))
    assert wrong.status_code == 400, wrong.json
    assert {e["field"] for e in wrong.json["errors"]} == {"smtp_password", "imap_password"}
    assert stored(client, api_key, int(wrong.json["id"]))["status"] == 0


def test_lemlist_refusals_in_its_shape(client, api_key, team, mail_server):
    for headers in ({}, basic("mc_wrong"), {"x-api-key": api_key}, {"Authorization": "Basic !"}):
        response = client.post(LEMLIST, json=lemlist_body(mail_server), headers=headers)
        assert response.status_code == 401
        assert response.json["ok"] is False
        assert response.json["message"].startswith("Authorization:")
    body = {**lemlist_body(mail_server), "smtp_secure": "yes", "imap_port": "x"}
    response = client.post(LEMLIST, json=body, headers=basic(api_key))
    assert response.status_code == 400 and response.json["errors"] == [
        {"field": "smtp_secure", "message": "must be true or false"}]
    body = {**lemlist_body(mail_server), "imap_port": "x"}
    response = client.post(LEMLIST, json=body, headers=basic(api_key))
    assert response.status_code == 400
    assert [e["field"] for e in response.json["errors"]] == ["imap_port"]
