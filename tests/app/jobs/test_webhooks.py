import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app.config import load_settings
from app.jobs.finish import fail_job
from app.jobs.webhooks import (
    SIGNATURE_HEADER,
    WebhookPolicy,
    check_callback_url,
    deliver_webhook,
    signature_header,
)
from app.models import ConnectJob, Team
from app.teams import create_api_key, webhook_secret
from tests.app.jobs.helpers import view
from tests.app.jobs.test_runner import submit
from tests.factories import bulk_row

LOOPBACK = load_settings(PROBE_ALLOW_NETWORKS="127.0.0.0/8").allow_networks


class Receiver:
    """A real HTTP server on 127.0.0.1 that checks each delivery's signature."""

    def __init__(self, secret: str, answers: list[int]) -> None:
        self.secret = secret
        self.answers = answers
        self.received: list[dict] = []
        self.valid: list[bool] = []

    def handle(self, headers, body: bytes) -> int:
        stamp, _, digest = headers[SIGNATURE_HEADER].partition(",v1=")
        timestamp = stamp.removeprefix("t=")
        expected = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body,
                            hashlib.sha256).hexdigest()
        self.valid.append(hmac.compare_digest(expected, digest))
        self.received.append(json.loads(body))
        return self.answers.pop(0) if self.answers else 200


@contextmanager
def receiver(secret: str, answers: list[int]) -> Iterator[tuple[Receiver, str]]:
    target = Receiver(secret, answers)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(target.handle(self.headers, body))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target, f"http://127.0.0.1:{server.server_port}/hooks/mailconnect?x=1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def ended_job(services, team_id, url: str) -> str:
    job = submit(services, team_id, [bulk_row("nope")])
    with services.db.transaction() as session:
        session.get(ConnectJob, job.job_id).callback_url = url
    assert fail_job(services.db, services.clock, job.job_id, "the report could not be stored")
    return job.job_id


def deliver(services, job_id, **policy):
    return deliver_webhook(services.db, services.cipher, services.clock, services.store,
                           WebhookPolicy(allow_networks=LOOPBACK, backoff_seconds=2, **policy),
                           job_id)


def test_delivery_is_signed_with_the_teams_secret_and_recorded(services, team_id):
    secret = webhook_secret(services.db, services.cipher, team_id).reveal()
    with receiver(secret, [200]) as (target, url):
        job_id = ended_job(services, team_id, url)
        assert deliver(services, job_id) is None
        assert deliver(services, job_id) is None, "a repeated message delivers nothing more"
    assert target.valid == [True]
    (body,) = target.received
    assert body["payload"]["requestId"] == job_id
    assert (body["payload"]["status"], body["payload"]["isCompleted"]) == ("failed", True)
    assert body["payload"]["error"] == "the report could not be stored"
    done = view(services, team_id, job_id)
    assert (done.webhook_state, done.webhook_attempts, done.webhook_error) == (
        "delivered", 1, None)
    assert done.webhook_delivered_at is not None


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(services, team_id):
    secret = webhook_secret(services.db, services.cipher, team_id).reveal()
    with receiver(secret, [500, 503]) as (target, url):
        job_id = ended_job(services, team_id, url)
        assert deliver(services, job_id) == 2
        middle = view(services, team_id, job_id)
        assert (middle.webhook_state, middle.webhook_attempts) == ("pending", 1)
        assert "HTTP 500" in middle.webhook_error
        assert deliver(services, job_id) == 4
        assert deliver(services, job_id) is None
    assert target.valid == [True, True, True]
    done = view(services, team_id, job_id)
    assert (done.webhook_state, done.webhook_attempts, done.webhook_error) == (
        "delivered", 3, None)


def test_gives_up_after_the_last_attempt(services, team_id):
    with receiver("unused", [500] * 5) as (target, url):
        job_id = ended_job(services, team_id, url)
        assert deliver(services, job_id, max_attempts=2) == 2
        assert deliver(services, job_id, max_attempts=2) is None
        assert deliver(services, job_id, max_attempts=2) is None
    assert len(target.received) == 2
    done = view(services, team_id, job_id)
    assert (done.webhook_state, done.webhook_attempts) == ("failed", 2)


def test_a_non_public_address_is_refused_without_a_request(services, team_id):
    with receiver("unused", []) as (target, url):
        job_id = ended_job(services, team_id, url)
        delay = deliver_webhook(services.db, services.cipher, services.clock, services.store,
                                WebhookPolicy(), job_id)  # 127.0.0.1 not allow-listed
    assert delay is None and target.received == []
    done = view(services, team_id, job_id)
    assert done.webhook_state == "failed" and "host_blocked" in done.webhook_error


def test_an_unreachable_receiver_is_retried(services, team_id):
    with receiver("unused", []) as (_target, url):
        pass  # closed: nothing listens there any more
    job_id = ended_job(services, team_id, url)
    assert deliver(services, job_id, timeout_seconds=2) == 2
    assert view(services, team_id, job_id).webhook_state == "pending"


def test_a_job_without_callback_owes_nothing(services, team_id):
    job = submit(services, team_id, [bulk_row("nope")])
    fail_job(services.db, services.clock, job.job_id, "x")
    assert deliver(services, job.job_id) is None
    assert view(services, team_id, job.job_id).webhook_state is None


def test_the_team_secret_is_made_once_and_stored_encrypted(services, team_id):
    first = webhook_secret(services.db, services.cipher, team_id)
    assert webhook_secret(services.db, services.cipher, team_id) == first
    with services.db.reading() as session:
        stored = session.scalar(select(Team.webhook_secret).where(Team.id == team_id))
    assert first.reveal() not in stored and first.reveal().startswith("whsec_")


def test_signature_is_hmac_of_timestamp_and_body():
    from app.credentials import Secret

    header = signature_header(Secret("k"), 1700000000, b'{"a":1}')
    expected = hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/x", "http or https"),
    ("https:///path", "host"),
    ("https://example.com:99999/", "port"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com/" + "a" * 2048, "too long"),
])
def test_callback_url_checks(url, message):
    with pytest.raises(ValueError, match=message):
        check_callback_url(url)
    assert check_callback_url("https://hooks.example.com/a?b=c")


def test_a_webhook_whose_message_was_lost_is_owed_after_its_whole_schedule(services, team_id):
    from app.jobs.webhooks import owed_webhooks
    from tests.app.jobs.doubles import FakeClock

    clock = FakeClock()
    services.clock = clock
    job_id = ended_job(services, team_id, "https://hooks.example.com/x")
    policy = WebhookPolicy(max_attempts=3, backoff_seconds=10, timeout_seconds=5)
    assert policy.patience_seconds == 10 + 20 + 3 * 5 * 3
    clock.advance(policy.patience_seconds - 1)
    assert owed_webhooks(services.db, clock, policy) == []
    clock.advance(2)
    assert owed_webhooks(services.db, clock, policy) == [job_id]
    with services.db.transaction() as session:
        session.get(ConnectJob, job_id).webhook_attempts = 3
    assert owed_webhooks(services.db, clock, policy) == [], "given up: not announced again"
