"""The job-control endpoints: cancel, retry, list, idempotency, callbackUrl, summary."""

import io
import json

import pytest
from sqlalchemy import func, select

from app.jobs.finish import finish_job
from app.models import ConnectJob, ConnectJobRow, Team
from app.teams import create_api_key
from tests.app.jobs.doubles import FakeProber
from tests.app.jobs.test_runner import run_all
from tests.factories import bulk_row

URL = "/v1/email-accounts/connect"


def submit(client, key, rows, headers=None, query=""):
    return client.post(URL + query, data=json.dumps(rows), content_type="application/json",
                       headers={"x-api-key": key, **(headers or {})})


def request_id(response) -> str:
    """The requestId of an accepted connect, reconnect or retry, whose answer must be
    Saleshandy's documented one exactly: 200, `message` and `payload.requestId`, nothing else."""
    assert response.status_code == 200, response.json
    assert set(response.json) == {"message", "payload"}, response.json
    assert set(response.json["payload"]) == {"requestId"}, response.json
    return response.json["payload"]["requestId"]


def status(client, key, job_id) -> dict:
    response = client.get(f"{URL}/status/{job_id}", headers={"x-api-key": key})
    assert response.status_code == 200, response.json
    return response.json["payload"]


def job_count(services) -> int:
    with services.db.reading() as session:
        return session.scalar(select(func.count()).select_from(ConnectJob))


def finished(client, key, services, rows) -> str:
    job_id = request_id(submit(client, key, rows))
    run_all(services, job_id, FakeProber())
    assert finish_job(services.db, services.clock, services.store, job_id)
    return job_id


def test_cancel_answers_the_status_and_finishes_a_job_with_nothing_left(
        client, api_key, queue):
    job_id = request_id(submit(client, api_key, [bulk_row("a@example.com"), bulk_row("nope")]))
    response = client.post(f"{URL}/{job_id}/cancel", headers={"x-api-key": api_key})
    assert response.status_code == 202
    payload = response.json["payload"]
    assert (payload["status"], payload["cancelled"], payload["processed"]) == ("queued", 1, 2)
    assert payload["cancelRequestedAt"] and payload["isCompleted"] is False
    assert queue.finished == [job_id]
    again = client.post(f"{URL}/{job_id}/cancel", headers={"x-api-key": api_key})
    assert again.status_code == 202 and again.json["payload"]["cancelled"] == 1


def test_cancelling_an_ended_job_is_409(client, api_key, services):
    job_id = finished(client, api_key, services, [bulk_row()])
    response = client.post(f"{URL}/{job_id}/cancel", headers={"x-api-key": api_key})
    assert response.status_code == 409
    assert response.json["message"].startswith("requestId:")
    payload = status(client, api_key, job_id)
    assert (payload["status"], payload["isCompleted"]) == ("completed", True)


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_controls_on_another_teams_job_are_404(client, api_key, services, action):
    job_id = finished(client, api_key, services, [bulk_row(smtpHost="bad.example.com")])
    other = create_api_key(services.db, services.clock, "globex").key
    for key, target in ((other, job_id), (api_key, "nope")):
        response = client.post(f"{URL}/{target}/{action}", headers={"x-api-key": key})
        assert response.status_code == 404
        assert response.json["message"].startswith("requestId:")


def test_retry_starts_a_new_job_of_the_failed_rows(client, api_key, services, queue):
    job_id = finished(client, api_key, services,
                      [bulk_row("a@example.com"), bulk_row("b@example.com", smtpHost="bad.x")])
    response = client.post(f"{URL}/{job_id}/retry?codes=auth_failed,server_throttled",
                           headers={"x-api-key": api_key})
    new_id = request_id(response)
    assert new_id != job_id and queue.started[-1] == new_id
    payload = status(client, api_key, new_id)
    assert (payload["kind"], payload["retryOf"], payload["total"]) == ("retry", job_id, 1)


def test_a_retry_sent_twice_with_one_idempotency_key_makes_one_job(client, api_key,
                                                                    services):
    job_id = finished(client, api_key, services,
                      [bulk_row("a@example.com"), bulk_row("b@example.com", smtpHost="bad.x")])
    url, key = f"{URL}/{job_id}/retry?codes=auth_failed", {"x-api-key": api_key}
    first = request_id(client.post(url, headers={**key, "Idempotency-Key": "r1"}))
    assert request_id(client.post(url, headers={**key, "Idempotency-Key": "r1"})) == first
    assert job_count(services) == 2, "the job and one retry"

    for other, headers in ((f"{URL}/{job_id}/retry", {"Idempotency-Key": "r1"}),
                           (url, {"Idempotency-Key": " "})):
        refused = client.post(other, headers={**key, **headers})
        assert refused.status_code == 422
        assert refused.json["message"].startswith("Idempotency-Key:")
    assert request_id(client.post(url, headers={**key, "Idempotency-Key": "r2"})) != first


def test_retry_refusals(client, api_key, services):
    running = request_id(submit(client, api_key, [bulk_row()]))
    response = client.post(f"{URL}/{running}/retry", headers={"x-api-key": api_key})
    assert response.status_code == 409 and response.json["message"].startswith("requestId:")
    clean = finished(client, api_key, services, [bulk_row()])
    response = client.post(f"{URL}/{clean}/retry", headers={"x-api-key": api_key})
    assert response.status_code == 409 and "no failed rows" in response.json["message"]
    for codes in ("nonsense", "auth_failed,bogus", ","):
        response = client.post(f"{URL}/{clean}/retry?codes={codes}",
                               headers={"x-api-key": api_key})
        assert response.status_code == 422 and response.json["message"].startswith("codes:")


def test_jobs_are_listed_newest_first_and_not_taken_for_a_request_id(client, api_key):
    ids = [request_id(submit(client, api_key, [bulk_row()])) for _ in range(3)]
    response = client.get(f"{URL}/jobs?limit=2", headers={"x-api-key": api_key})
    assert response.status_code == 200
    payload = response.json["payload"]
    assert (payload["page"], payload["limit"], payload["total"]) == (1, 2, 3)
    listed = payload["jobs"]
    assert {j["requestId"] for j in listed} <= set(ids) and len(listed) == 2
    assert set(listed[0]) == {"requestId", "kind", "status", "isCompleted", "total", "processed",
                              "succeeded", "failed", "invalid", "cancelled", "createdAt",
                              "completedAt"}
    assert listed[0]["createdAt"] >= listed[1]["createdAt"]
    rest = client.get(f"{URL}/jobs?page=2&limit=2", headers={"x-api-key": api_key})
    assert len(rest.json["payload"]["jobs"]) == 1
    for query in ("limit=0", "limit=101", "page=0", "page=x"):
        response = client.get(f"{URL}/jobs?{query}", headers={"x-api-key": api_key})
        assert response.status_code == 422
        assert response.json["message"].split(":")[0] == query.split("=")[0]


def test_idempotency_key_replays_the_same_job(client, api_key, services, queue):
    rows = [bulk_row()]
    first = submit(client, api_key, rows, {"Idempotency-Key": "abc"})
    second = submit(client, api_key, rows, {"Idempotency-Key": "abc"})
    assert request_id(first) == request_id(second)
    assert first.json == second.json
    assert job_count(services) == 1 and len(queue.started) == 1
    other = submit(client, api_key, [bulk_row("x@example.com")], {"Idempotency-Key": "abc"})
    assert other.status_code == 422
    assert other.json["message"].startswith("Idempotency-Key:")
    for bad in ("", "k" * 256):
        response = submit(client, api_key, rows, {"Idempotency-Key": bad})
        assert response.status_code == 422
        assert response.json["message"].startswith("Idempotency-Key:")
    assert job_count(services) == 1


def test_idempotency_key_on_a_multipart_upload(client, api_key, services):
    csv = b"smtpEmailAddress,smtpPassword,smtpHost,smtpPort,imapHost,imapPort\n" \
          b"a@example.com,pw,smtp.example.com,465,imap.example.com,993\n"
    answers = [client.post(URL, data={"file": (io.BytesIO(csv), "a.csv")},
                           content_type="multipart/form-data",
                           headers={"x-api-key": api_key, "Idempotency-Key": "up"})
               for _ in range(2)]
    assert request_id(answers[0]) == request_id(answers[1])
    assert job_count(services) == 1


def test_idempotency_key_on_reconnect(client, api_key, services):
    first = client.post("/v1/email-accounts/reconnect", json=[1],
                        headers={"x-api-key": api_key, "Idempotency-Key": "r"})
    second = client.post("/v1/email-accounts/reconnect", json=[1],
                         headers={"x-api-key": api_key, "Idempotency-Key": "r"})
    assert request_id(first) == request_id(second)
    assert job_count(services) == 1


def test_callback_url_is_checked_and_defaults_to_the_teams(client, api_key, services):
    response = submit(client, api_key, [bulk_row()], query="?callbackUrl=ftp://x.example")
    assert response.status_code == 422
    assert response.json["message"].startswith("callbackUrl:")
    assert job_count(services) == 0
    given = request_id(submit(client, api_key, [bulk_row()],
                              query="?callbackUrl=https://hooks.example.com/a"))
    with services.db.transaction() as session:
        session.scalar(select(Team)).callback_url = "https://team.example.com/hook"
    default = request_id(submit(client, api_key, [bulk_row()]))
    with services.db.reading() as session:
        urls = {j.id: j.callback_url for j in session.scalars(select(ConnectJob))}
    assert urls == {given: "https://hooks.example.com/a",
                    default: "https://team.example.com/hook"}
    payload = status(client, api_key, given)
    assert payload["webhook"] == {"state": None, "attempts": 0, "error": None,
                                  "deliveredAt": None}


def test_status_shows_the_summary_and_failed_rows_link(client, api_key, services):
    job_id = finished(client, api_key, services,
                      [bulk_row("a@example.com"), bulk_row("b@example.com", smtpHost="bad.x"),
                       bulk_row("nope"), bulk_row("nope2")])
    payload = status(client, api_key, job_id)
    # Invalid rows are counted at intake, the failed one by the runner's result write.
    assert payload["errorsByCode"] == {"invalid_fields": 2, "auth_failed": 1}
    assert payload["failedRowsURL"] and payload["reportURL"]
    assert payload["etaSeconds"] is None and payload["cancelled"] == 0
    assert payload["reportExpired"] is False and payload["webhook"] is None
    with services.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(ConnectJobRow)) == 4
