"""Tenant isolation: another team's key finds nothing of this team's, on every endpoint.

What belongs to another team answers exactly as something that does not exist: 404, never 403
(which would confirm the id is real) and never the data.
"""

import json
import re

import pytest
import requests
from sqlalchemy import func, select

from app.models import ConnectJob, EmailAccount
from app.teams import create_api_key, team_for_key
from tests.app.jobs.helpers import finished_job
from tests.app.web.test_accounts import mailbox, saved
from tests.conftest import USERS
from tests.factories import bulk_row

pytestmark = pytest.mark.integration
BASE = "/v1/email-accounts"
MISSING_JOB = "0" * 32
MISSING_ACCOUNT = 999_999


@pytest.fixture
def acme(real_services, mail_server):
    """Team acme: a verified account and a finished job with a failed row."""
    created = create_api_key(real_services.db, real_services.clock, "acme")
    account_id = saved(real_services, created.team_id,
                       mailbox(mail_server, "alice@example.test", fromFirstName="Alice"))
    job_id = finished_job(real_services, created.team_id,
                          [bulk_row("ok@acme.test"), bulk_row("bad@acme.test", smtpHost="bad.x")])
    return {"key": created.key, "team": created.team_id, "account": account_id, "job": job_id}


@pytest.fixture
def globex(real_services):
    return create_api_key(real_services.db, real_services.clock, "globex").key


def call(client, key, method, path, body=None):
    headers = {"x-api-key": key}
    if body is None:
        return client.open(path, method=method, headers=headers)
    return client.open(path, method=method, headers=headers, data=json.dumps(body),
                       content_type="application/json")


def by_id_endpoints(job: str, account: int) -> list[tuple[str, str, object]]:
    return [
        ("GET", f"{BASE}/connect/status/{job}", None),
        ("POST", f"{BASE}/connect/{job}/cancel", None),
        ("POST", f"{BASE}/connect/{job}/retry", None),
        ("GET", f"{BASE}/{account}", None),
        ("DELETE", f"{BASE}/{account}", None),
        ("POST", f"{BASE}/{account}/test", None),
        ("PATCH", f"{BASE}/{account}", {"fromFirstName": "Mallory"}),
    ]


def account_row(services, account_id):
    with services.db.reading() as session:
        return session.get(EmailAccount, account_id)


def test_every_endpoint_naming_another_teams_job_or_account_is_404(client, real_services, acme,
                                                                   globex):
    before = account_row(real_services, acme["account"])
    targets = by_id_endpoints(acme["job"], acme["account"])
    missing = by_id_endpoints(MISSING_JOB, MISSING_ACCOUNT)
    for (method, path, body), (_, missing_path, _) in zip(targets, missing, strict=True):
        foreign = call(client, globex, method, path, body)
        assert foreign.status_code == 404, (method, path, foreign.get_json())
        text = foreign.get_data(as_text=True)
        assert "alice@example.test" not in text and "acme.test" not in text
        # Indistinguishable from an id that does not exist, but for the id itself.
        absent = call(client, globex, method, missing_path, body)
        assert absent.status_code == 404
        assert (foreign.get_json()["message"].replace(str(acme["job"]), "ID")
                .replace(str(acme["account"]), "ID")
                == absent.get_json()["message"].replace(MISSING_JOB, "ID")
                .replace(str(MISSING_ACCOUNT), "ID"))

    after = account_row(real_services, acme["account"])
    assert after is not None, "globex's DELETE removed acme's account"
    assert (after.from_first_name, after.settings_version, after.last_tested_at) == (
        before.from_first_name, before.settings_version, before.last_tested_at)
    # The owner still sees everything as it was.
    mine = call(client, acme["key"], "GET", f"{BASE}/connect/status/{acme['job']}")
    assert mine.status_code == 200 and mine.get_json()["payload"]["status"] == "completed"
    assert call(client, acme["key"], "GET", f"{BASE}/{acme['account']}").status_code == 200


def test_lists_show_another_team_nothing(client, real_services, acme, globex):
    accounts = call(client, globex, "GET", BASE).get_json()["payload"]
    jobs = call(client, globex, "GET", f"{BASE}/connect/jobs").get_json()["payload"]
    assert accounts["total"] == 0 and jobs["total"] == 0
    assert "alice" not in json.dumps(accounts) and acme["job"] not in json.dumps(jobs)
    # alice, and the finished job's two accounts
    assert call(client, acme["key"], "GET", BASE).get_json()["payload"]["total"] == 3


def test_reconnect_treats_another_teams_account_as_unknown(client, real_services, acme, globex,
                                                           queue):
    before = account_row(real_services, acme["account"])
    answer = call(client, globex, "POST", f"{BASE}/reconnect", [acme["account"]])
    assert answer.status_code == 200
    foreign_job = answer.get_json()["payload"]["requestId"]
    absent = call(client, globex, "POST", f"{BASE}/reconnect", [MISSING_ACCOUNT])
    statuses = [call(client, globex, "GET", f"{BASE}/connect/status/{job}").get_json()["payload"]
                for job in (foreign_job, absent.get_json()["payload"]["requestId"])]
    assert [s["invalid"] for s in statuses] == [1, 1]
    assert account_row(real_services, acme["account"]).last_tested_at == before.last_tested_at
    assert "alice" not in json.dumps(statuses)


def test_connecting_the_same_mailbox_makes_the_other_team_its_own_account(
        client, real_services, acme, globex, mail_server):
    row = mailbox(mail_server, "alice@example.test", password=USERS["alice@example.test"],
                  fromFirstName="Mallory")
    answer = call(client, globex, "POST", f"{BASE}/smtp-imap/connect", row)
    assert answer.status_code in (200, 201), answer.get_json()
    theirs = answer.get_json()["payload"]["id"]
    assert theirs != acme["account"]
    assert account_row(real_services, acme["account"]).from_first_name == "Alice"
    with real_services.db.reading() as session:
        owners = session.execute(
            select(EmailAccount.team_id, func.count()).group_by(EmailAccount.team_id)).all()
    assert sorted(count for _, count in owners) == [1, 3]


def test_an_idempotency_key_is_per_team(client, real_services, acme, globex):
    body = [bulk_row("zed@example.com")]
    headers = {"Idempotency-Key": "same-key-for-both-teams"}
    first = client.post(f"{BASE}/connect", json=body,
                        headers={"x-api-key": acme["key"], **headers})
    second = client.post(f"{BASE}/connect", json=body, headers={"x-api-key": globex, **headers})
    assert first.status_code == second.status_code == 200
    job_ids = [answer.get_json()["payload"]["requestId"] for answer in (first, second)]
    assert job_ids[0] != job_ids[1]
    with real_services.db.reading() as session:
        teams = session.execute(
            select(ConnectJob.team_id).where(ConnectJob.id.in_(job_ids))).scalars().all()
    assert sorted(teams) == sorted([acme["team"], team_for_key(real_services.db, globex)])


def test_report_links_are_presigned_expire_and_name_an_unguessable_object(
        client, real_services, acme):
    payload = call(client, acme["key"], "GET",
                   f"{BASE}/connect/status/{acme['job']}").get_json()["payload"]
    for link in (payload["reportURL"], payload["failedRowsURL"]):
        assert "X-Amz-Signature=" in link and "X-Amz-Expires=" in link
        path = link.split("?")[0]
        # The object's name carries a random part beyond the requestId the client knows.
        assert re.search(rf"{acme['job']}-[A-Za-z0-9_-]{{20,}}\.csv$", path), path
        assert requests.get(link, timeout=10).status_code == 200
        assert requests.get(path, timeout=10).status_code == 403  # unsigned: refused
