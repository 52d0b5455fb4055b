"""Re-testing stored accounts in bulk, through a real worker and the real servers."""

import pytest

from app.accounts.management import connect_account
from app.accounts.slots import HostSlots
from app.importing.rows import validate_row
from app.jobs.hostgate import OpenGate
from app.teams import create_api_key
from tests.conftest import USERS
from tests.factories import bulk_row
from tests.servers.worker import celery_process

pytestmark = pytest.mark.integration


def stored(api, team_id, server, email, password):
    row = bulk_row(email, smtpPassword=password, imapPassword=password, smtpHost="localhost",
                   smtpPort=server.submission_port, smtpEncryption="starttls",
                   imapHost="localhost", imapPort=server.imaps_port, imapEncryption="ssl",
                   maxEmailPerDay=25)
    s = api.services
    return connect_account(s.db, s.cipher, s.clock, s.prober, team_id,
                           validate_row(row, policy=s.settings.host_policy),
                           slots=HostSlots(OpenGate(), 1)).account_id


def test_reconnect_retests_with_stored_credentials(api, env, tmp_path, mail_server):
    s = api.services
    from app.teams import team_for_key

    team = team_for_key(s.db, api.key)
    alice = stored(api, team, mail_server, "alice@example.test", USERS["alice@example.test"])
    dave = stored(api, team, mail_server, "dave@example.test", "wrong")
    other_team = create_api_key(s.db, s.clock, "globex").team_id
    foreign = stored(api, other_team, mail_server, "bob@example.test", USERS["bob@example.test"])

    ids = [alice, dave, foreign, 999999, alice, "x"]
    response = api.client.post("/v1/email-accounts/reconnect", json=ids,
                               headers={"x-api-key": api.key})
    assert response.status_code == 200, response.json
    request_id = response.json["payload"]["requestId"]
    with celery_process("worker", env, tmp_path) as worker:
        status = api.wait(request_id, timeout=120, diagnostics=worker.tail)
    assert (status["total"], status["succeeded"], status["failed"], status["invalid"]) == (
        6, 1, 1, 4)
    report = api.report(status)
    got = [(r["row"], r["status"], r["errorCode"]) for r in report]
    assert got == [("1", "connected", ""), ("2", "failed", "auth_failed"),
                   ("3", "invalid", "account_not_found"), ("4", "invalid", "account_not_found"),
                   ("5", "invalid", "duplicate_in_request"),
                   ("6", "invalid", "account_not_found")]
    assert report[0]["accountId"] == str(alice)
    assert "no account" in report[2]["validationErrors"]
    account = api.client.get(f"/v1/email-accounts/{alice}",
                             headers={"x-api-key": api.key}).json["payload"]
    assert account["sending"]["maxEmailPerDay"] == 25, "a re-test keeps the sending settings"


@pytest.mark.parametrize(("body", "status"), [("{", 400), ("[]", 422), ('{"a": 1}', 422)])
def test_reconnect_whole_request_errors(api, body, status):
    response = api.client.post("/v1/email-accounts/reconnect", data=body,
                               content_type="application/json", headers={"x-api-key": api.key})
    assert response.status_code == status
    assert response.json["message"].startswith("body:")


def _queued_reconnect(api, ids) -> str:
    response = api.client.post("/v1/email-accounts/reconnect", json=ids,
                               headers={"x-api-key": api.key})
    assert response.status_code == 200, response.json
    return response.json["payload"]["requestId"]


def test_an_account_deleted_while_its_reconnect_is_queued_stays_deleted(api, env, tmp_path,
                                                                        mail_server):
    from app.teams import team_for_key

    team = team_for_key(api.services.db, api.key)
    alice = stored(api, team, mail_server, "alice@example.test", USERS["alice@example.test"])
    request_id = _queued_reconnect(api, [alice])  # no worker yet: the job waits in the broker
    url = f"/v1/email-accounts/{alice}"
    assert api.client.delete(url, headers={"x-api-key": api.key}).status_code == 200

    with celery_process("worker", env, tmp_path) as worker:
        status = api.wait(request_id, timeout=120, diagnostics=worker.tail)
    assert api.client.get(url, headers={"x-api-key": api.key}).status_code == 404, (
        "the re-test brought a deleted account back")
    [row] = api.report(status)
    assert row["errorCode"] == "account_deleted" and row["status"] != "connected", row


def test_a_password_patched_while_a_reconnect_is_queued_is_the_one_kept_and_tested(
        api, env, tmp_path, mail_server):
    from app.teams import team_for_key

    s = api.services
    team = team_for_key(s.db, api.key)
    password = USERS["dave@example.test"]
    dave = stored(api, team, mail_server, "dave@example.test", "wrong")
    request_id = _queued_reconnect(api, [dave])  # would test, and write back, "wrong"
    url = f"/v1/email-accounts/{dave}"
    patched = api.client.patch(url, json={"smtpPassword": password, "imapPassword": password},
                               headers={"x-api-key": api.key})
    assert patched.status_code == 200 and patched.json["payload"]["status"] == 1

    with celery_process("worker", env, tmp_path) as worker:
        status = api.wait(request_id, timeout=120, diagnostics=worker.tail)
    [row] = api.report(status)
    assert (row["status"], row["accountId"]) == ("connected", str(dave)), (
        "the job tested the account as it was when its probe started")
    from app.accounts.management import get_account

    account = get_account(s.db, team, dave)
    secrets = s.cipher.decrypt(account.credentials)
    assert (secrets["smtp"].reveal(), secrets["imap"].reveal()) == (password, password)
    assert (account.status, account.smtp_result, account.imap_result) == (1, "ok", "ok")
    assert account.max_email_per_day == 25
