"""Log lines: one JSON object each, carrying the ids of what they are about."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from app import logs
from tests.factories import bulk_row


@pytest.fixture
def stream():
    out = io.StringIO()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    logs.configure_logging("DEBUG", "json", stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_context(stream):
    log = logging.getLogger("mailconnect.test")
    log.info("outside")
    with logs.log_context(request_id="job-1", row_id=7):
        log.warning("row says %s", "hello\nworld")
        logs.bind(account_id=42)
        log.info("saved")
    log.info("after")
    first, second, third, fourth = lines(stream)
    assert "requestId" not in first and "requestId" not in fourth
    assert second["message"] == "row says hello\nworld" and second["level"] == "WARNING"
    assert (second["requestId"], second["rowId"]) == ("job-1", 7)
    assert third["accountId"] == 42 and third["logger"] == "mailconnect.test"
    assert "accountId" not in fourth


def test_exceptions_stay_on_one_line(stream):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (event,) = lines(stream)
    assert "ValueError: boom" in event["exception"]


def test_each_thread_has_its_own_context(stream):
    log = logging.getLogger("x")
    barrier = threading.Barrier(2)

    def work(request_id: str) -> None:
        with logs.log_context(request_id=request_id):
            barrier.wait()
            log.info("in %s", request_id)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted((e["message"], e["requestId"]) for e in lines(stream)) == [
        ("in a", "a"), ("in b", "b")]


def test_text_format_keeps_the_context():
    out = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        logs.configure_logging("INFO", "text", stream=out)
        with logs.log_context(request_id="job-9"):
            logging.getLogger("y").info("plain")
    finally:
        root.handlers[:] = handlers
    assert out.getvalue().rstrip().endswith("y: plain requestId=job-9")


def test_web_requests_log_the_ids_in_their_url(stream, client):
    app = client.application

    @app.get("/probe-log/<request_id>/<int:account_id>")
    def probe_log(request_id: str, account_id: int):
        logging.getLogger("mailconnect.web").info("handling")
        return ""

    assert client.get("/probe-log/job-3/5").status_code == 200
    client.get("/healthz")
    events = [e for e in lines(stream) if e["logger"] == "mailconnect.web"]
    assert [(e["requestId"], e["accountId"]) for e in events] == [("job-3", 5)]
    assert logs.current_context() == {}  # the request's context ended with it


def test_gunicorn_lines_go_through_the_same_format():
    config = logs.gunicorn_logconfig("INFO", "json")
    assert config["loggers"]["gunicorn.access"] == {"level": "INFO", "handlers": [],
                                                    "propagate": True}
    formatter = logs.formatter_for("json")
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1,
                               '%(h)s "%(r)s" %(s)s', None, None)
    record.args = {"h": "127.0.0.1", "r": "GET /x?api_key=k HTTP/1.1", "m": "GET", "U": "/x",
                   "s": "200", "D": "1500",
                   "{mailconnect.log_context}e": {"requestId": "job-3"}}
    event = json.loads(formatter.format(record))
    assert (event["method"], event["path"], event["status"], event["durationMs"],
            event["requestId"]) == ("GET", "/x", "200", 1.5, "job-3")
    assert logs.ContextFilter().filter(record)
    assert logs.formatter_for("text").format(record).endswith('"GET /x?api_key=k HTTP/1.1" '
                                                              '200 requestId=job-3')


def test_a_bulk_connect_names_its_new_job_in_its_later_lines(stream, client, queue, api_key,
                                                             monkeypatch):
    def lost_bell(job_id: str) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "start_job", lost_bell)
    response = client.post("/v1/email-accounts/connect", headers={"x-api-key": api_key},
                           json=[bulk_row("sarah@example.com")])
    assert response.status_code == 200
    job_id = response.json["payload"]["requestId"]
    lost = [e for e in lines(stream) if "could not publish" in e["message"]]
    assert lost and lost[0]["requestId"] == job_id


def test_a_bind_outside_any_context_labels_nothing_later(stream):
    logs.bind(account_id=9)
    logging.getLogger("mailconnect.test").info("later, about something else")
    assert "accountId" not in lines(stream)[0]
    assert logs.current_context() == {}
