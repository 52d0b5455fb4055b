import io
import json

import pytest
from sqlalchemy import func, select

from app.models import ConnectJob, ConnectJobRow
from app.teams import create_api_key
from tests.factories import bulk_row

URL = "/v1/email-accounts/connect"


def post(client, key, body, content_type="application/json", **kwargs):
    data = json.dumps(body) if content_type == "application/json" else body
    return client.post(URL, data=data, content_type=content_type,
                       headers={"x-api-key": key}, **kwargs)


def job_count(services) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(ConnectJob))


def test_accepts_batch_and_publishes_one_message(client, api_key, queue, services):
    response = post(client, api_key, [bulk_row("a@example.com"), bulk_row("b@example.com")])
    assert response.status_code == 200
    request_id = response.json["payload"]["requestId"]
    assert request_id in response.json["message"]
    assert queue.started == [request_id]
    assert queue.rows == [] and queue.finished == []
    status = client.get(f"{URL}/status/{request_id}", headers={"x-api-key": api_key})
    payload = status.json["payload"]
    assert payload["status"] == "queued"
    assert (payload["total"], payload["processed"], payload["invalid"]) == (2, 0, 0)
    assert payload["isCompleted"] is False and payload["reportURL"] is None
    assert payload["progress"] == 0.0


def test_bearer_token_accepted(client, api_key):
    response = client.post(URL, json=[bulk_row()], headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "mc_wrong"}, {"Authorization": "Basic x"}])
def test_missing_or_wrong_key(client, services, headers):
    response = client.post(URL, json=[bulk_row()], headers=headers)
    assert response.status_code == 401
    assert response.json["message"].startswith("x-api-key:")
    assert job_count(services) == 0


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    ("{not json", "application/json", 400, "body: is not valid JSON"),
    ('{"a": 1}', "application/json", 422, "body: must be a JSON array"),
    ("[]", "application/json", 422, "body: must contain at least one account"),
    ("<xml/>", "application/xml", 415, "Content-Type: must be"),
    ("", "text/csv", 422, "file: is empty"),
])
def test_whole_request_errors_create_no_job(client, api_key, services, body, content_type,
                                            status, message):
    response = client.post(URL, data=body, content_type=content_type,
                           headers={"x-api-key": api_key})
    assert response.status_code == status
    assert response.json["message"].startswith(message)
    assert job_count(services) == 0


def test_too_many_rows_is_413(client, api_key, services):
    services.settings.max_accounts_per_request = 2
    response = post(client, api_key, [bulk_row(f"u{i}@example.com") for i in range(3)])
    assert response.status_code == 413
    assert "at most 2" in response.json["message"]
    assert job_count(services) == 0


def test_body_over_size_limit_is_413(client, api_key, services):
    client.application.config["MAX_CONTENT_LENGTH"] = 1000
    response = post(client, api_key, [bulk_row(f"u{i}@example.com") for i in range(20)])
    assert response.status_code == 413
    assert response.json["message"].startswith("body:")


def test_invalid_rows_and_duplicates_are_reported_not_rejected(client, api_key, queue, services):
    rows = [bulk_row("a@example.com"), bulk_row("bad", smtpPort=0), bulk_row("A@example.com")]
    response = post(client, api_key, rows)
    assert response.status_code == 200
    job_id = response.json["payload"]["requestId"]
    with services.db.transaction() as session:
        stored = session.execute(select(ConnectJobRow).where(ConnectJobRow.job_id == job_id)
                                 .order_by(ConnectJobRow.row_no)).scalars().all()
        assert [r.state for r in stored] == ["pending", "invalid", "invalid"]
        assert stored[1].error_code == "invalid_fields"
        assert {e["field"] for e in stored[1].field_errors} == {
            "smtpEmailAddress", "imapEmailAddress", "smtpPort"}
        assert stored[2].error_code == "duplicate_in_request"
        assert "s3cret" not in json.dumps(stored[0].settings)
        assert "s3cret" not in stored[0].credentials
    status = client.get(f"{URL}/status/{job_id}", headers={"x-api-key": api_key}).json["payload"]
    assert (status["total"], status["processed"], status["invalid"]) == (3, 2, 2)


def test_all_invalid_goes_straight_to_finish(client, api_key, queue):
    response = post(client, api_key, [bulk_row("bad")])
    assert queue.started == []
    assert queue.finished == [response.json["payload"]["requestId"]]


def test_csv_body_and_multipart_file(client, api_key, queue):
    csv = ("smtpEmailAddress,smtpPassword,smtpHost,smtpPort,imapHost,imapPort,warmup\n"
           "a@example.com,pw,smtp.example.com,465,imap.example.com,993,yes\n")
    response = post(client, api_key, csv, content_type="text/csv")
    assert response.status_code == 200
    status = client.get(f"{URL}/status/{response.json['payload']['requestId']}",
                        headers={"x-api-key": api_key}).json["payload"]
    assert status["ignoredColumns"] == ["warmup"]
    assert status["invalid"] == 0

    response = client.post(URL, data={"file": (io.BytesIO(csv.encode()), "accounts.csv")},
                           content_type="multipart/form-data", headers={"x-api-key": api_key})
    assert response.status_code == 200
    response = client.post(URL, data={"other": "x"}, content_type="multipart/form-data",
                           headers={"x-api-key": api_key})
    assert response.status_code == 422
    assert response.json["message"].startswith("file: is required")


def test_status_of_unknown_or_other_teams_job_is_404(client, api_key, services):
    job_id = post(client, api_key, [bulk_row()]).json["payload"]["requestId"]
    other_key = create_api_key(services.db, services.clock, "globex").key
    for key, request_id in ((api_key, "nope"), (other_key, job_id)):
        response = client.get(f"{URL}/status/{request_id}", headers={"x-api-key": key})
        assert response.status_code == 404
        assert response.json["message"].startswith("requestId:")


def test_publish_failure_still_accepts(client, api_key, queue):
    def broken(job_id):
        raise ConnectionError("redis down")

    queue.start_job = broken
    assert post(client, api_key, [bulk_row()]).status_code == 200


def test_healthz(client):
    assert client.get("/healthz").status_code == 200


def test_unknown_route_is_json_404(client, api_key):
    response = client.get("/v1/nothing", headers={"x-api-key": api_key})
    assert response.status_code == 404
    assert "message" in response.json


def test_report_link_failure_is_503_not_500(client, api_key, services, queue):
    from app.jobs.finish import finish_job
    from app.storage import StorageError

    job_id = post(client, api_key, [bulk_row("bad")]).json["payload"]["requestId"]
    finish_job(services.db, services.clock, services.store, job_id)

    def broken(key, expires_in):
        raise StorageError("no credentials")

    services.store.download_url = broken
    response = client.get(f"{URL}/status/{job_id}", headers={"x-api-key": api_key})
    assert response.status_code == 503
    assert response.json["message"].startswith("reportURL:")


def test_missing_hosts_are_filled_from_presets_and_mx_lookups_are_left_to_workers(
        client, api_key, services, queue):
    class CountingMx:
        calls: list[str] = []

        def mx_hosts(self, domain):
            self.calls.append(domain)
            return ["aspmx.l.google.com"]

    services.mx_resolvers = CountingMx
    bare = {"smtpEmailAddress": "ann@acme.com", "smtpPassword": "pw"}
    rows = [bare, {**bare, "smtpEmailAddress": "bo@unknown.example"},
            {**bare, "smtpEmailAddress": "cy@zoho.example", "emailServiceProvider": "zoho"},
            {**bare, "smtpEmailAddress": "di@own.example", "emailServiceProvider": "custom"}]
    job_id = post(client, api_key, rows).json["payload"]["requestId"]
    assert CountingMx.calls == [], "the POST does no network I/O"
    with services.db.reading() as session:
        stored = session.execute(select(ConnectJobRow).where(ConnectJobRow.job_id == job_id)
                                 .order_by(ConnectJobRow.row_no)).scalars().all()
        deferred, other_domain, preset, custom = stored
        for row in (deferred, other_domain):
            assert row.state == "pending"
            assert row.settings["detectProvider"] is True, "a worker detects the provider"
            assert row.settings["smtp"]["host"] is None
        assert preset.settings["smtp"]["host"] == "smtp.zoho.com"
        assert "emailServiceProvider" not in preset.settings["filled"]
        assert "detectProvider" not in preset.settings
        assert custom.state == "invalid", "a custom server must be named"
        assert any(e["field"] == "smtpHost" for e in custom.field_errors)
