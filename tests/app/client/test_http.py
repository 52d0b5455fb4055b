"""The HTTP client against a scripted transport: what it sends, how it waits, what a refusal
becomes, and that the key never leaves except in the service's own header."""

from __future__ import annotations

import json

import httpx
import pytest

from app.client.http import ServiceClient, ServiceError, Upload
from app.credentials import Secret

KEY = "mc_test_key_0123456789abcdef0123456789"
BASE = "http://service.test"


class Script:
    """Answers requests in order, recording each."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, sleeps: list[float] | None = None, **kwargs) -> ServiceClient:
    record = sleeps if sleeps is not None else []
    return ServiceClient(BASE, Secret(KEY), transport=httpx.MockTransport(script),
                         sleep=record.append, **kwargs)


def accepted(status: int = 202) -> httpx.Response:
    return httpx.Response(status, json={"message": "ok", "payload": {"requestId": "abc123"}})


@pytest.mark.parametrize("status", [200, 202])
def test_submit_sends_the_file_with_its_type_key_and_an_idempotency_key(tmp_path, status):
    path = tmp_path / "accounts.csv"
    path.write_bytes(b"smtpEmailAddress,smtpPassword\na@x.test,pw\n")
    script = Script(accepted(status))
    assert client(script).submit(Upload.of(path)) == "abc123"
    sent = script.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/v1/email-accounts/connect")
    assert sent.headers["content-type"] == "text/csv"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["idempotency-key"].startswith("cli-")
    assert sent.content == path.read_bytes()


@pytest.mark.parametrize(("name", "content", "content_type"), [
    ("rows.json", b'[{"a": 1}]', "application/json"),
    ("rows.csv", b"a,b\n1,2\n", "text/csv"),
    ("rows.txt", b'\xef\xbb\xbf  [{"a": 1}]', "application/json"),
    ("rows", b"smtpEmailAddress\nx@y.test\n", "text/csv"),
])
def test_upload_type_from_the_suffix_or_the_content(tmp_path, name, content, content_type):
    path = tmp_path / name
    path.write_bytes(content)
    assert Upload.of(path).content_type == content_type


def test_a_429_waits_as_long_as_retry_after_says_and_the_post_is_sent_again_alike(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[]")
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"}),
                    httpx.Response(503, json={"message": "database: temporarily unavailable"}),
                    accepted())
    sleeps: list[float] = []
    assert client(script, sleeps).submit(Upload.of(path)) == "abc123"
    assert sleeps == [7.0, 2.0]  # Retry-After, then the backoff's second step
    keys = {r.headers["idempotency-key"] for r in script.requests}
    assert len(keys) == 1  # the service replays the first job instead of making another


def test_gives_up_after_max_attempts_with_the_last_message():
    script = Script(*[httpx.Response(503, headers={"Retry-After": "1"},
                                     json={"message": "database: temporarily unavailable"})] * 3)
    with pytest.raises(ServiceError) as caught:
        client(script, max_attempts=3).status("abc")
    assert caught.value.status == 503
    assert "database: temporarily unavailable" in caught.value.message
    assert len(script.requests) == 3


def test_a_refusal_carries_the_servers_message_naming_the_field_and_never_the_key():
    echoed = {"message": f"x-api-key: {KEY} is not a key",
              "errors": [{"row": 2, "field": "smtpPort", "message": "must be 1-65535"}]}
    script = Script(httpx.Response(401, json=echoed))
    with pytest.raises(ServiceError) as caught:
        client(script).accounts(page=2, limit=10, status=1)
    assert caught.value.status == 401
    assert "x-api-key: ******** is not a key" in caught.value.message
    assert "smtpPort: must be 1-65535" in caught.value.message
    assert KEY not in caught.value.message and KEY not in str(caught.value)
    assert dict(script.requests[0].url.params) == {"page": "2", "limit": "10", "status": "1"}


def test_an_unreachable_service_fails_at_once_but_a_lost_one_is_waited_for():
    refused = httpx.ConnectError(f"connection refused by {KEY}")
    sleeps: list[float] = []
    with pytest.raises(ServiceError) as caught:
        client(Script(refused), sleeps).status("abc")
    assert caught.value.status is None and sleeps == []
    assert KEY not in caught.value.message and "connection refused" in caught.value.message

    running = httpx.Response(200, json={"payload": {"status": "running"}})
    script = Script(running, refused, refused, running)
    service = client(script, sleeps)
    assert service.status("abc")["status"] == "running"
    assert service.status("abc")["status"] == "running"
    assert sleeps == [1.0, 2.0]


def test_status_quotes_the_request_id_into_the_path():
    script = Script(httpx.Response(200, json={"payload": {"requestId": "a/b"}}))
    client(script).status("a/b?c")
    assert script.requests[0].url.raw_path == b"/v1/email-accounts/connect/status/a%2Fb%3Fc"


def test_an_answer_without_payload_is_an_error_not_a_crash():
    script = Script(httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(ServiceError, match="not a JSON object"):
        client(script).status("abc")
    script = Script(httpx.Response(202, json={"message": "?"}))
    with pytest.raises(ServiceError, match="requestId"):
        client(script).submit(Upload(b"[]", "application/json"))


def test_download_sends_no_key_and_leaves_no_half_file(tmp_path):
    script = Script(httpx.Response(200, content=b"row,email\n1,a@x.test\n"),
                    httpx.Response(403, content=b"<Error>expired</Error>"))
    service = client(script)
    to = tmp_path / "a.report.csv"
    assert service.download("http://s3.test/bucket/r.csv?X-Amz-Signature=1", to) == to
    assert to.read_bytes() == b"row,email\n1,a@x.test\n"
    assert "x-api-key" not in script.requests[0].headers
    assert json.dumps(dict(script.requests[0].headers)).find(KEY) == -1
    with pytest.raises(ServiceError, match="403"):
        service.download("http://s3.test/bucket/r.csv", tmp_path / "b.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.report.csv"]
