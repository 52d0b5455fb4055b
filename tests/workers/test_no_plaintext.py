"""Nothing in plain text anywhere: passwords go in through every door (a bulk job with a good,
a wrong and an invalid row and one against servers that echo what they were sent, a single
connect, a dry run, a PATCH, a retry, a reconnect, a re-test), gunicorn, a Celery worker and
beat run it all with LOG_LEVEL=DEBUG, and then every place the service wrote is searched for
the passwords in every form: not one is found."""

from __future__ import annotations

import base64
import json
import secrets
import time
from contextlib import ExitStack

import pytest
import requests

from tests.factories import mail_row, single_body
from tests.servers.dovecot import start_mail_server
from tests.servers.faults import scripted_imap, scripted_smtp
from tests.servers.web import web
from tests.servers.worker import celery_process, wait_ready
from tests.workers.conftest import Api
from tests.workers.leaks import (
    Finding,
    LeakSearch,
    Place,
    database_places,
    log_places,
    redis_monitor,
    redis_places,
    s3_places,
)

pytestmark = pytest.mark.integration

CANARY = f"Zq7-plaintext-canary-{secrets.token_hex(6)}"
# Each password is used once, so a finding says which door it came through.
PASSWORDS = {
    "bulk good": f"{CANARY}-good",
    "bulk wrong": f"{CANARY}-wrong",
    "bulk invalid row": f"{CANARY}-invalid",
    "bulk echoed": f"{CANARY}-echoed",
    "single connect": f"{CANARY}-single",
    "dry run echoed": f"{CANARY}-dry",
    "PATCHed in": f"{CANARY}-patched",
    "oauth2 access token": f"{CANARY}-oauth-access",
    "oauth2 refresh token": f"{CANARY}-oauth-refresh",
    "oauth2 invalid row": f"{CANARY}-oauth-invalid",
}
USERS = {
    "good@leak.test": PASSWORDS["bulk good"],
    "wrong@leak.test": PASSWORDS["PATCHed in"],  # wrong until the PATCH sends this one
    "single@leak.test": PASSWORDS["single connect"],
}
LOGIN = {"bulk good": "good@leak.test", "bulk wrong": "wrong@leak.test",
         "bulk invalid row": "invalid@leak.test", "bulk echoed": "echo@leak.test",
         "single connect": "single@leak.test", "dry run echoed": "dry@leak.test",
         "PATCHed in": "wrong@leak.test", "oauth2 access token": "oauth@leak.test",
         "oauth2 refresh token": "oauth@leak.test", "oauth2 invalid row": "oauthbad@leak.test"}
# Servers that put what they were sent into their refusal, as some real servers do: the
# service stores and reports the server's words, so they must be scrubbed first.
ECHO_SMTP = {"AUTH": "535 5.7.8 Authentication failed for: {received}"}
ECHO_IMAP = {"LOGIN": "NO [AUTHENTICATIONFAILED] rejected: {received}",
             "AUTHENTICATE": "NO [AUTHENTICATIONFAILED] rejected: {received}"}


class RecordingClient:
    """The API over HTTP, keeping every response it received (status, headers and body)."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["x-api-key"] = key
        self.responses: list[requests.Response] = []

    def call(self, method: str, path: str, expect: int, **kwargs) -> dict:
        response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        self.responses.append(response)
        assert response.status_code == expect, (method, path, response.status_code,
                                                response.text)
        return response.json()

    def fetch(self, url: str) -> bytes:
        response = requests.get(url, timeout=30)  # presigned: no API key
        self.responses.append(response)
        assert response.status_code == 200, (url, response.text)
        return response.content

    def wait(self, request_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("GET", f"/v1/email-accounts/connect/status/{request_id}", 200)
            if status["payload"]["isCompleted"]:
                return status["payload"]
            assert time.monotonic() < deadline, status
            time.sleep(0.2)

    def places(self) -> list[Place]:
        places = []
        for number, response in enumerate(self.responses, 1):
            head = f"HTTP {response.status_code}\n" + "".join(
                f"{name}: {value}\n" for name, value in response.headers.items())
            name = f"#{number} {response.request.method} {response.url.split('?')[0]}"
            places.append(Place("response", name, head.encode() + b"\n" + response.content))
        return places


def oauth2_row(email: str, smtp: tuple[int, str], imap: tuple[int, str], **tokens) -> dict:
    plain = mail_row(email, "", smtp, imap)
    del plain["smtpPassword"], plain["imapPassword"]
    return {**plain, "authType": "oauth2", "oauth2Provider": "custom", **tokens}


def drive(api: RecordingClient, mail, echo_login, echo_plain) -> list[bytes]:
    """Every way a password reaches the service; returns the files the status linked."""
    ssl = ((mail.submissions_port, "ssl"), (mail.imaps_port, "ssl"))
    accounts = "/v1/email-accounts"
    job = api.call("POST", f"{accounts}/connect", 200, json=[
        mail_row("good@leak.test", PASSWORDS["bulk good"], *ssl),
        mail_row("wrong@leak.test", PASSWORDS["bulk wrong"], *ssl),
        mail_row("invalid@leak.test", PASSWORDS["bulk invalid row"], (99999, "ssl"),
            (mail.imaps_port, "ssl")),
        mail_row("echo@leak.test", PASSWORDS["bulk echoed"], (echo_login[0].port, "none"),
            (echo_login[1].port, "none")),
        # An OAuth2 row whose access token the echoing servers send back, and an invalid one.
        oauth2_row("oauth@leak.test", (echo_login[0].port, "none"), (echo_login[1].port, "none"),
                   oauth2AccessToken=PASSWORDS["oauth2 access token"],
                   oauth2RefreshToken=PASSWORDS["oauth2 refresh token"]),
        oauth2_row("oauthbad@leak.test", (99999, "ssl"), (mail.imaps_port, "ssl"),
                   oauth2RefreshToken=PASSWORDS["oauth2 invalid row"]),
    ])["payload"]["requestId"]
    status = api.wait(job)
    assert (status["succeeded"], status["failed"], status["invalid"]) == (1, 3, 2), status
    files = [api.fetch(status["reportURL"]), api.fetch(status["failedRowsURL"])]
    # The echoing servers' words reached the report (the search below checks they were
    # scrubbed).
    assert b"Authentication failed for: AUTH LOGIN" in files[0]
    assert b"rejected: a1 LOGIN" in files[0]

    connected = api.call("POST", f"{accounts}/smtp-imap/connect", 200,
                         json=single_body("single@leak.test", PASSWORDS["single connect"], *ssl))
    assert connected["payload"]["status"] == 1, connected
    dry = api.call("POST", f"{accounts}/smtp-imap/connect", 200,
                   json=single_body("dry@leak.test", PASSWORDS["dry run echoed"],
                               (echo_plain[0].port, "none"), (echo_plain[1].port, "none"),
                               test=True))
    assert dry["payload"]["smtpConnection"]["errorCode"] == "auth_failed", dry
    api.call("POST", f"{accounts}/{connected['payload']['id']}/test", 200)

    # A retry re-tests the failed rows with their stored (still wrong) credentials.
    retry = api.call("POST", f"{accounts}/connect/{job}/retry", 200)["payload"]["requestId"]
    retried = api.wait(retry)
    assert retried["failed"] == 3, retried
    files += [api.fetch(retried["reportURL"]), api.fetch(retried["failedRowsURL"])]

    ids = {a["email"]: a["id"] for a in api.call("GET", accounts, 200)["payload"]["accounts"]}
    patched = api.call("PATCH", f"{accounts}/{ids['wrong@leak.test']}", 200,
                       json={"smtpPassword": PASSWORDS["PATCHed in"],
                             "imapPassword": PASSWORDS["PATCHed in"]})
    assert patched["payload"]["status"] == 1, patched
    reconnect = api.call("POST", f"{accounts}/reconnect", 200,
                         json=sorted(ids.values()))["payload"]["requestId"]
    again = api.wait(reconnect)
    assert (again["succeeded"], again["failed"]) == (3, 2), again
    files += [api.fetch(again["reportURL"]), api.fetch(again["failedRowsURL"])]
    api.call("GET", f"{accounts}/{ids['echo@leak.test']}", 200)
    api.call("GET", f"{accounts}/connect/jobs", 200)
    return files


def test_no_password_in_plain_text_anywhere(env, tmp_path, pki, redis_url):
    env = {**env, "LOG_LEVEL": "DEBUG", "SWEEP_INTERVAL_SECONDS": "1", "WORKER_CONCURRENCY": "4"}
    with ExitStack() as stack:
        mail = stack.enter_context(start_mail_server(tmp_path / "dovecot", pki, USERS))
        redis_commands = stack.enter_context(redis_monitor(redis_url))
        echo_login = (stack.enter_context(scripted_smtp(ECHO_SMTP, auth_mechanisms="LOGIN")),
                      stack.enter_context(scripted_imap({}, replies=ECHO_IMAP,
                                                        capabilities=("IMAP4rev1",))))
        echo_plain = (stack.enter_context(scripted_smtp(ECHO_SMTP, auth_mechanisms="PLAIN")),
                      stack.enter_context(scripted_imap({}, replies=ECHO_IMAP)))
        worker = stack.enter_context(celery_process("worker", env, tmp_path,
                                                    extra=["--loglevel", "DEBUG"]))
        beat = stack.enter_context(celery_process(
            "beat", env, tmp_path,
            extra=["--loglevel", "DEBUG", "--schedule", str(tmp_path / "beat-schedule")]))
        base, web_process = stack.enter_context(web(env, tmp_path))
        wait_ready(worker)
        key = Api(env).key
        api = RecordingClient(base, key)
        files = drive(api, mail, echo_login, echo_plain)
        # Redis as the processes left it: the Celery queues, unacked messages, host slots.
        redis_now = redis_places(redis_url)
    # The processes have stopped, so their logs are complete.
    logs = log_places([web_process.log, worker.log, beat.log])

    places = [*database_places(env["DATABASE_URL"]), *logs, *redis_now,
              Place("redis", "every command it received (MONITOR)", bytes(redis_commands)),
              *s3_places(env), *api.places()]
    secrets_sought = {label: (password, LOGIN[label]) for label, password in PASSWORDS.items()}
    secrets_sought["API key"] = (key, None)
    secrets_sought["CREDENTIALS_KEYS"] = (env["CREDENTIALS_KEYS"], None)
    search = LeakSearch(secrets_sought)

    assert_search_would_see_a_leak(search, places, files)
    findings: list[Finding] = [f for place in places for f in search.find(place)]
    kinds = {kind: sum(p.kind == kind for p in places)
             for kind in ("database", "log", "redis", "s3", "response")}
    print(f"\nsearched {len(places)} places for {len(secrets_sought)} secrets in "
          f"{len(next(iter(search.forms.values())))} forms each: {kinds}")
    leaks: dict[tuple[str, str], list[str]] = {}
    for finding in findings:
        leaks.setdefault((finding.secret, finding.place), []).append(finding.form)
    assert not leaks, "\n".join(f"{secret} in {place} ({', '.join(forms)})"
                                 for (secret, place), forms in leaks.items())


def assert_search_would_see_a_leak(search: LeakSearch, places: list[Place],
                                   files: list[bytes]) -> None:
    """The search looked at real content: what must be in each kind of place is there, and a
    password planted in a scratch copy of any place is found."""
    by_kind: dict[str, list[Place]] = {}
    for place in places:
        by_kind.setdefault(place.kind, []).append(place)
    database = {p.name: p.data for p in by_kind["database"]}
    assert b"good@leak.test" in database["email_accounts"]
    assert b"echo@leak.test" in database["connect_job_rows"]
    logs = {p.name: p.data for p in by_kind["log"]}
    assert b"DEBUG" in logs["worker.log"] and b"mailconnect.run_rows" in logs["worker.log"]
    assert b"mailconnect.sweep" in logs["beat.log"]
    assert b"POST /v1/email-accounts/connect" in logs["web.log"]
    # The logs were searched in the format production writes: JSON events naming their job.
    for name in ("worker.log", "web.log", "beat.log"):
        events = [json.loads(line) for line in logs[name].splitlines() if line.startswith(b"{")]
        assert events, name
    worker_events = [json.loads(line) for line in logs["worker.log"].splitlines()
                     if line.startswith(b"{")]
    assert any("requestId" in e and "rowId" in e for e in worker_events)
    assert any(p.name.endswith("_kombu.binding.mailconnect.probe") for p in by_kind["redis"])
    commands = next(p.data for p in by_kind["redis"] if "MONITOR" in p.name)
    assert b'"LPUSH" "mailconnect.probe"' in commands and b'"HSET" "unacked"' in commands
    assert len(by_kind["s3"]) == 6 and all(f in [p.data for p in by_kind["s3"]] for f in files)
    assert any(b"echo@leak.test" in f for f in files)
    assert len(by_kind["response"]) >= 15

    # A password as a Celery message would carry it: base64 of JSON, inside JSON.
    message = json.dumps({"body": base64.b64encode(json.dumps(
        [["x", PASSWORDS["bulk echoed"]], {}, {}]).encode()).decode()}).encode()
    plants = [*search.forms["bulk echoed"].values(), message]
    for number, place in enumerate(places):
        scratch = Place(place.kind, place.name,
                        place.data + b"\n" + plants[number % len(plants)])
        assert any(f.secret == "bulk echoed" for f in search.find(scratch)), place.name
