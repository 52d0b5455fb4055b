"""Metrics, logs and readiness of the real processes: a small job against Dovecot through
gunicorn (two workers) and a Celery worker, then /metrics has every family with the exact
counts, whichever gunicorn worker answers, and every log line is JSON with the job's ids."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import USERS
from tests.factories import bulk_row, single_body
from tests.servers.web import web
from tests.servers.worker import celery_process, wait_ready
from tests.workers.conftest import Api

pytestmark = pytest.mark.integration

EVENT_FAMILIES = ("mailconnect_rows_processed", "mailconnect_probe_results",
                  "mailconnect_probe_duration_seconds")


def account(email: str, password: str, mail) -> dict:
    return bulk_row(email, smtpPassword=password, imapPassword=password, smtpHost="localhost",
                    smtpPort=mail.submissions_port, smtpEncryption="ssl", imapHost="localhost",
                    imapPort=mail.imaps_port, imapEncryption="ssl")


def scrape(base: str) -> dict[str, dict[tuple, float]]:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {family.name: {(s.name, *sorted(s.labels.items())): s.value
                          for s in family.samples}
            for family in text_string_to_metric_families(text)}


def test_metrics_and_logs_after_a_real_job(env, tmp_path, mail_server):
    env = {**env, "WORKER_CONCURRENCY": "4"}
    alice = "alice@example.test"
    rows = [account(alice, USERS[alice], mail_server),
            account("dave@example.test", "wrong-password", mail_server),
            bulk_row("not-an-email", smtpPort=99999)]
    with ExitStack() as stack:
        worker = stack.enter_context(celery_process("worker", env, tmp_path,
                                                    extra=["--loglevel", "DEBUG"]))
        base, web_process = stack.enter_context(web(env, tmp_path, workers=2))
        wait_ready(worker)
        http = requests.Session()
        http.headers["x-api-key"] = Api(env).key
        submitted = http.post(f"{base}/v1/email-accounts/connect", json=rows, timeout=10)
        assert submitted.status_code == 200, submitted.text
        request_id = submitted.json()["payload"]["requestId"]
        deadline = time.monotonic() + 90
        while not (status := http.get(f"{base}/v1/email-accounts/connect/status/{request_id}",
                                      timeout=10).json()["payload"])["isCompleted"]:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.25)
        # A single connect is probed inside a gunicorn worker, not the Celery worker.
        connected = http.post(f"{base}/v1/email-accounts/smtp-imap/connect", timeout=30,
                              json=single_body(alice, USERS[alice], (mail_server.submissions_port,
                                                                "ssl"),
                                          (mail_server.imaps_port, "ssl"), test=True))
        assert connected.status_code < 300, connected.text
        # Several scrapes: both gunicorn workers answer some, and each adds up every process.
        scrapes = [scrape(base) for _ in range(8)]
        ready = requests.get(f"{base}/readyz", timeout=10)
    assert status["status"] == "completed"
    assert ready.status_code == 200, ready.text

    events = [{name: scraped[name] for name in EVENT_FAMILIES} for scraped in scrapes]
    assert all(e == events[0] for e in events), events
    found = scrapes[0]
    rows_done = found["mailconnect_rows_processed"]
    assert {labels[1][1]: v for labels, v in rows_done.items()} == {
        "connected": 1, "failed": 1, "invalid": 1, "cancelled": 0}
    results = {(dict(k[1:])["protocol"], dict(k[1:])["code"]): v
               for k, v in found["mailconnect_probe_results"].items()}
    # alice in the job and in the single connect; dave's wrong password once per protocol.
    assert results == {("smtp", "ok"): 2, ("imap", "ok"): 2, ("smtp", "auth_failed"): 1,
                       ("imap", "auth_failed"): 1}
    latency = found["mailconnect_probe_duration_seconds"]
    for protocol in ("smtp", "imap"):
        count = latency[("mailconnect_probe_duration_seconds_count", ("protocol", protocol))]
        assert count == sum(v for (p, _), v in results.items() if p == protocol) == 3
        assert latency[("mailconnect_probe_duration_seconds_bucket", ("le", "+Inf"),
                        ("protocol", protocol))] == 3
        assert latency[("mailconnect_probe_duration_seconds_sum", ("protocol", protocol))] > 0
    assert found["mailconnect_jobs"][("mailconnect_jobs", ("status", "completed"))] == 1
    assert set(found["mailconnect_queue_messages"]) == {
        ("mailconnect_queue_messages", ("queue", "mailconnect.probe")),
        ("mailconnect_queue_messages", ("queue", "mailconnect.control"))}
    assert "mailconnect_host_active_probes" in found  # no probe runs now: no host labels
    assert found["mailconnect_hosts_active"] == {("mailconnect_hosts_active",): 0}
    assert all(v == 1 for v in found["mailconnect_metrics_source_up"].values())

    worker_events = json_lines(worker.log.read_text())
    # The worker built what its tasks share before it said it was ready for them.
    messages = [e["message"] for e in worker_events]
    built = next(i for i, m in enumerate(messages) if m.startswith("worker services built"))
    assert built < next(i for i, m in enumerate(messages) if m.endswith(" ready.")), messages
    about_rows = [e for e in worker_events if e.get("requestId") == request_id]
    assert about_rows, worker.tail()
    recorded = {e["message"]: e for e in about_rows if e["message"].startswith("row recorded")}
    assert set(recorded) == {"row recorded: connected", "row recorded: failed (auth_failed)"}
    assert all(isinstance(e["rowId"], int) and isinstance(e["accountId"], int)
               for e in recorded.values())
    web_events = json_lines(web_process.log.read_text())
    # The access lines name the job: the POST that created it, and each poll of it.
    about_job = ("/v1/email-accounts/connect",
                 f"/v1/email-accounts/connect/status/{request_id}")
    accessed = [(e["path"], e["status"], e.get("requestId")) for e in web_events
                if e["logger"] == "gunicorn.access" and e["path"] in about_job]
    assert ("/v1/email-accounts/connect", "200", request_id) in accessed, web_process.tail()
    assert all(named == request_id for _, _, named in accessed), accessed


def json_lines(text: str) -> list[dict]:
    """Every log line that is an event (Celery's start-up banner is printed, not logged)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
