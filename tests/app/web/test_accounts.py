"""Account management against the real test servers (Dovecot IMAP and submission)."""

import pytest
from sqlalchemy import select

from app.accounts.management import connect_account
from app.accounts.slots import HostSlots
from app.importing.rows import validate_row
from app.jobs.hostgate import OpenGate
from app.models import EmailAccount
from app.teams import create_api_key
from tests.conftest import USERS
from tests.factories import bulk_row

pytestmark = pytest.mark.integration
BASE = "/v1/email-accounts"


def mailbox(server, email, password=None, **overrides):
    password = password or USERS[email]
    return bulk_row(email, smtpPassword=password, imapPassword=password, smtpHost="localhost",
                    smtpPort=server.submission_port, smtpEncryption="starttls",
                    imapHost="localhost", imapPort=server.imaps_port, imapEncryption="ssl",
                    **overrides)


def saved(real_services, team_id, row):
    return connect_account(real_services.db, real_services.cipher, real_services.clock,
                           real_services.prober, team_id,
                           validate_row(row, policy=real_services.settings.host_policy),
                           slots=HostSlots(OpenGate(), 1)).account_id


def headers(key):
    return {"x-api-key": key}


def test_list_filters_paginates_and_never_shows_passwords(client, api_key, real_services, team,
                                                          mail_server):
    saved(real_services, team, mailbox(mail_server, "alice@example.test"))
    saved(real_services, team, mailbox(mail_server, "bob@example.test", password="wrong",
                                       fromFirstName="Bobby", emailServiceProvider="gmail"))
    other = create_api_key(real_services.db, real_services.clock, "globex").team_id
    saved(real_services, other, mailbox(mail_server, "carol@example.test"))

    body = client.get(BASE, headers=headers(api_key)).json["payload"]
    assert [a["email"] for a in body["accounts"]] == ["alice@example.test", "bob@example.test"]
    assert body["total"] == 2
    assert all(p not in str(body) for p in USERS.values())
    assert body["accounts"][1]["smtpConnection"]["errorCode"] == "auth_failed"
    assert "App Password" in body["accounts"][1]["smtpConnection"]["hint"]

    def emails(query):
        response = client.get(f"{BASE}?{query}", headers=headers(api_key))
        assert response.status_code == 200, response.json
        return [a["email"] for a in response.json["payload"]["accounts"]]

    assert emails("status=1") == ["alice@example.test"]
    assert emails("status=0") == ["bob@example.test"]
    assert emails("provider=GMAIL") == ["bob@example.test"]
    assert emails("search=bobby") == ["bob@example.test"]
    assert emails("search=ALICE") == ["alice@example.test"]
    assert emails("page=2&limit=1") == ["bob@example.test"]
    for bad in ("page=0", "limit=500", "status=2", "limit=x"):
        response = client.get(f"{BASE}?{bad}", headers=headers(api_key))
        assert response.status_code == 422
        assert response.json["message"].startswith(bad.split("=")[0] + ":")


def test_get_test_and_delete_are_scoped_to_the_team(client, api_key, real_services, team,
                                                    mail_server):
    account_id = saved(real_services, team, mailbox(mail_server, "alice@example.test"))
    other_key = create_api_key(real_services.db, real_services.clock, "globex").key
    for method, path in (("get", ""), ("post", "/test"), ("delete", "")):
        response = getattr(client, method)(f"{BASE}/{account_id}{path}",
                                           headers=headers(other_key))
        assert response.status_code == 404, (method, path)

    shown = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]
    assert shown["status"] == 1 and shown["smtp"]["port"] == mail_server.submission_port
    assert shown["lastTestedAt"] and shown["createdAt"]

    tested = client.post(f"{BASE}/{account_id}/test", headers=headers(api_key)).json["payload"]
    assert tested["status"] == 1 and tested["smtpConnection"]["success"] is True

    assert client.delete(f"{BASE}/{account_id}", headers=headers(api_key)).status_code == 200
    assert client.get(f"{BASE}/{account_id}", headers=headers(api_key)).status_code == 404


def test_patch_sending_settings_without_retest_and_credentials_with_retest(
        client, api_key, real_services, team, mail_server):
    account_id = saved(real_services, team, mailbox(mail_server, "bob@example.test",
                                                     password="wrong"))
    url = f"{BASE}/{account_id}"
    response = client.patch(url, json={"maxEmailPerDay": 40, "warmupEnabled": True,
                                       "tags": ["sales"], "suspended": True,
                                       "signature": "<p>Bob</p>"}, headers=headers(api_key))
    assert response.status_code == 200, response.json
    body = response.json["payload"]
    assert body["sending"]["maxEmailPerDay"] == 40 and body["sending"]["tags"] == ["sales"]
    assert body["sending"]["signature"] == "<p>Bob</p>" and body["suspended"] is True
    assert body["status"] == 0, "no re-test for sending settings"

    password = USERS["bob@example.test"]
    response = client.patch(url, json={"smtpPassword": password, "imapPassword": password},
                            headers=headers(api_key))
    assert response.status_code == 200, response.json
    assert response.json["payload"]["status"] == 1, "new credentials were tested"
    assert response.json["payload"]["sending"]["maxEmailPerDay"] == 40, "settings kept"

    bad = client.patch(url, json={"smtpPort": 0, "warmupReplyRate": 300},
                       headers=headers(api_key))
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json["errors"]} == {"smtpPort", "warmupReplyRate"}
    moved = client.patch(url, json={"smtpEmailAddress": "x@example.test"},
                         headers=headers(api_key))
    assert moved.status_code == 422 and moved.json["message"].startswith("smtpEmailAddress:")
    assert client.patch(url, data="[]", content_type="application/json",
                        headers=headers(api_key)).status_code == 422
    assert client.patch(url, data="x", content_type="text/plain",
                        headers=headers(api_key)).status_code == 415
    with real_services.db.reading() as session:
        stored = session.scalar(select(EmailAccount.credentials))
    assert password not in stored


def single(server, email, password=None, **extra):
    password = password or USERS[email]
    return {
        "emailServiceProvider": "zoho", "fromName": "Alice A", "fromFirstName": "Alice",
        "fromLastName": "A",
        "payload": {
            "smtp": {"emailAddress": email, "password": password, "host": "localhost",
                     "port": server.submission_port, "encryption": "TLS", "userName": email},
            "imap": {"emailAddress": email, "password": password, "host": "localhost",
                     "port": server.imaps_port, "encryption": "SSL"},
        },
        **extra,
    }


def test_single_connect_saves_whatever_the_result(client, api_key, real_services, mail_server):
    url = f"{BASE}/smtp-imap/connect"
    good = client.post(url, json=single(mail_server, "alice@example.test"),
                       headers=headers(api_key))
    assert good.status_code == 200, good.json
    payload = good.json["payload"]
    assert payload["status"] == 1 and payload["id"]
    assert payload["smtpConnection"]["success"] and payload["imapConnection"]["success"]

    bad = client.post(url, json=single(mail_server, "dave@example.test", password="nope",
                                       warmup="x"), headers=headers(api_key))
    assert bad.status_code == 200
    payload = bad.json["payload"]
    assert payload["status"] == 0 and payload["id"]
    assert payload["smtpConnection"] == {
        "success": False, "result": "failed", "errorCode": "auth_failed",
        "error": payload["smtpConnection"]["error"],
        "hint": payload["smtpConnection"]["hint"]}
    assert payload["smtpConnection"]["hint"]
    assert payload["ignoredFields"] == ["warmup"]
    assert "nope" not in str(bad.json)
    with real_services.db.reading() as session:
        assert sorted(session.scalars(select(EmailAccount.email))) == [
            "alice@example.test", "dave@example.test"]


def test_unicode_display_names_are_kept_through_to_the_api(client, api_key, mail_server):
    names = {"fromName": "Zoë Ñúñez 李雷", "fromFirstName": "Zoë", "fromLastName": "Ñúñez 李雷"}
    connected = client.post(f"{BASE}/smtp-imap/connect",
                            json={**single(mail_server, "alice@example.test"), **names},
                            headers=headers(api_key))
    assert connected.status_code == 200, connected.json
    account_id = connected.json["payload"]["id"]
    shown = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]
    assert {name: shown[name] for name in names} == names


def test_single_connect_refuses_control_characters_in_hosts_and_user_names(client, api_key,
                                                                           mail_server):
    body = single(mail_server, "alice@example.test")
    body["payload"]["smtp"]["host"] = "localhost\r\n"
    body["payload"]["imap"]["userName"] = "alice@example.test\r\nA1 LOGOUT"
    response = client.post(f"{BASE}/smtp-imap/connect", json=body, headers=headers(api_key))
    assert response.status_code == 422, response.json
    errors = {e["field"]: e["message"] for e in response.json["errors"]}
    # Named as the client sent them, not by the flat names they are validated under.
    assert set(errors) == {"payload.smtp.host", "payload.imap.userName"}
    assert all("control characters" in message for message in errors.values())
    assert "LOGOUT" not in str(response.json), "the refused value is not echoed back"


def test_single_connect_dry_run_saves_nothing(client, api_key, real_services, mail_server):
    response = client.post(f"{BASE}/smtp-imap/connect",
                           json=single(mail_server, "alice@example.test", test=True),
                           headers=headers(api_key))
    assert response.status_code == 200
    assert response.json["payload"]["status"] == 1 and response.json["payload"]["id"] is None
    with real_services.db.reading() as session:
        assert session.scalars(select(EmailAccount)).all() == []


def test_single_connect_validation_names_every_field(client, api_key, mail_server):
    body = single(mail_server, "alice@example.test")
    body["payload"]["smtp"]["port"] = 0
    body["payload"]["imap"]["encryption"] = "quantum"
    body["emailServiceProvider"] = "hotmail"
    response = client.post(f"{BASE}/smtp-imap/connect", json=body, headers=headers(api_key))
    assert response.status_code == 422
    assert {e["field"] for e in response.json["errors"]} == {
        "payload.smtp.port", "payload.imap.encryption", "emailServiceProvider"}
    for bad_body, status in (("[1]", 422), ("{", 400)):
        response = client.post(f"{BASE}/smtp-imap/connect", data=bad_body,
                               content_type="application/json", headers=headers(api_key))
        assert response.status_code == status
    response = client.post(f"{BASE}/smtp-imap/connect", json={**body, "test": "yes"},
                           headers=headers(api_key))
    assert response.status_code == 422 and response.json["message"].startswith("test:")


def single_account_calls(client, api_key, mail_server, account_id):
    """Every call that tests one account while the user waits (a new dave@example.test, or
    the saved account_id), each a function that makes it."""
    return {
        "connect": lambda: client.post(f"{BASE}/smtp-imap/connect",
                                       json=single(mail_server, "dave@example.test"),
                                       headers=headers(api_key)),
        "dry run": lambda: client.post(f"{BASE}/smtp-imap/connect",
                                       json=single(mail_server, "dave@example.test", test=True),
                                       headers=headers(api_key)),
        "test": lambda: client.post(f"{BASE}/{account_id}/test", headers=headers(api_key)),
        "patch": lambda: client.patch(f"{BASE}/{account_id}", json={"smtpPassword": "x"},
                                      headers=headers(api_key)),
    }


@pytest.fixture
def capped(real_services, env):
    """A cap of 1 per host on the test's real Redis, and a 1 s probe deadline to wait out."""
    import redis

    from app.config import load_settings
    from app.jobs.hostgate import RedisHostGate

    client = redis.Redis.from_url(env["REDIS_URL"])
    for key in client.scan_iter("mailconnect:host:*"):
        client.delete(key)
    real_services.gate = RedisHostGate(client, max_per_host=1, host_limits={},
                                       lease_seconds=30)
    real_services.settings = load_settings(**{**env, "PROBE_TIMEOUT_SECONDS": "1"})
    return real_services.gate


def test_single_account_calls_wait_for_the_hosts_slots(client, api_key, real_services, team,
                                                       mail_server, capped):
    account_id = saved(real_services, team, mailbox(mail_server, "alice@example.test"))
    before = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]
    held = capped.acquire(["localhost"]).lease  # a job's runner testing another mailbox

    calls = single_account_calls(client, api_key, mail_server, account_id)
    for name, call in calls.items():
        busy = call()
        assert busy.status_code == 503, (name, busy.json)
        assert busy.json["errorCode"] == "host_busy" and "localhost" in busy.json["message"]
        assert int(busy.headers["Retry-After"]) >= 1
    after = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]
    assert after == before, "a PATCH that found no slot changed nothing"
    with real_services.db.reading() as session:
        assert session.scalar(select(EmailAccount.id).where(
            EmailAccount.email == "dave@example.test")) is None

    capped.release(held)
    for name, call in calls.items():
        response = call()
        assert response.status_code == 200, (name, response.json)
        assert capped.in_use("localhost") == 0, f"{name} released its slot"


class HeldProber:
    """Holds the first probe until the test has changed the account, then passes it."""

    def __init__(self, prober) -> None:
        import threading

        self.prober = prober
        self.entered, self.go = threading.Event(), threading.Event()
        self.held = False

    def probe_sync(self, smtp, imap):
        if not self.held:
            self.held = True
            self.entered.set()
            assert self.go.wait(20)
        return self.prober.probe_sync(smtp, imap)


@pytest.mark.parametrize("meanwhile", ["delete", "patch"])
def test_retest_answers_say_what_happened_meanwhile(client, api_key, real_services, team,
                                                    mail_server, meanwhile):
    from concurrent.futures import ThreadPoolExecutor

    account_id = saved(real_services, team, mailbox(mail_server, "alice@example.test"))
    held = real_services.prober = HeldProber(real_services.prober)
    url = f"{BASE}/{account_id}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        test = pool.submit(lambda: client.post(f"{url}/test", headers=headers(api_key)))
        assert held.entered.wait(20)
        if meanwhile == "delete":
            assert client.delete(url, headers=headers(api_key)).status_code == 200
        else:
            patched = client.patch(url, json={"smtpPassword": "wrong", "imapPassword": "wrong"},
                                   headers=headers(api_key))
            assert patched.status_code == 200 and patched.json["payload"]["stale"] is False
        held.go.set()
        answer = test.result(timeout=30)

    if meanwhile == "delete":
        assert answer.status_code == 404
        assert answer.json["message"].startswith(f"id: account {account_id} was deleted")
        assert client.get(url, headers=headers(api_key)).status_code == 404
        return
    assert answer.status_code == 200, answer.json
    payload = answer.json["payload"]
    assert payload["stale"] is True and payload["status"] == 1, "this test passed the old one"
    assert "not from this test" in answer.json["message"]
    stored = client.get(url, headers=headers(api_key)).json["payload"]
    assert stored["status"] == 0 and stored["smtpConnection"]["errorCode"] == "auth_failed"


def connect_with_a_change_during_its_test(client, api_key, services, mail_server, email,
                                          change):
    """A single connect of `email` whose test is held until `change()` has run; its answer."""
    from concurrent.futures import ThreadPoolExecutor

    held = services.prober = HeldProber(services.prober)
    with ThreadPoolExecutor(max_workers=1) as pool:
        connect = pool.submit(lambda: client.post(
            f"{BASE}/smtp-imap/connect", json=single(mail_server, email),
            headers=headers(api_key)))
        assert held.entered.wait(20)
        change()
        held.go.set()
        answer = connect.result(timeout=30)
    assert answer.status_code == 200, answer.json
    return answer


def test_a_connect_answer_says_when_a_patch_made_during_its_test_was_kept(
        client, api_key, real_services, team, mail_server):
    account_id = saved(real_services, team, mailbox(mail_server, "alice@example.test"))

    def patch() -> None:
        patched = client.patch(f"{BASE}/{account_id}", headers=headers(api_key),
                               json={"smtpPassword": "wrong", "imapPassword": "wrong"})
        assert patched.status_code == 200

    answer = connect_with_a_change_during_its_test(client, api_key, real_services, mail_server,
                                                   "alice@example.test", patch)
    payload = answer.json["payload"]
    assert (payload["id"], payload["status"], payload["stale"]) == (account_id, 1, True)
    assert "the newer settings were kept" in answer.json["message"]
    stored = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]
    assert stored["status"] == 0 and stored["smtpConnection"]["errorCode"] == "auth_failed"


def test_a_connect_answer_says_when_the_account_was_deleted_during_its_test(
        client, api_key, real_services, team, mail_server):
    account_id = saved(real_services, team, mailbox(mail_server, "alice@example.test"))

    def delete() -> None:
        assert client.delete(f"{BASE}/{account_id}", headers=headers(api_key)).status_code == 200

    answer = connect_with_a_change_during_its_test(client, api_key, real_services, mail_server,
                                                   "alice@example.test", delete)
    payload = answer.json["payload"]
    assert (payload["id"], payload["status"], payload["stale"]) == (None, 1, True)
    assert "deleted while this test ran" in answer.json["message"]
    listed = client.get(BASE, headers=headers(api_key)).json["payload"]
    assert listed["total"] == 0, "the connect brought the deleted account back"
