"""A worker killed mid-job: the job still completes, every row once, no account twice."""

import socket
import time

import pytest
from sqlalchemy import func, select

from app.models import EmailAccount
from tests.factories import bulk_row
from tests.servers.worker import celery_process

pytestmark = pytest.mark.integration

ROWS = 24


@pytest.fixture
def silent_listener():
    """Accepts connections (the kernel completes them) but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        yield sock.getsockname()[1]


def test_killed_worker_loses_nothing(api, env, tmp_path, silent_listener, mail_server):
    env.update(PROBE_TIMEOUT_SECONDS="1", ROW_LEASE_SECONDS="4", JOB_STALL_SECONDS="3",
               SWEEP_INTERVAL_SECONDS="1", WORKER_CONCURRENCY="4")
    rows = [bulk_row(f"user{i}@example.test", smtpHost="localhost", smtpPort=silent_listener,
                     smtpEncryption="starttls", imapHost="localhost",
                     imapPort=mail_server.imaps_port, imapEncryption="ssl")
            for i in range(ROWS)]

    with celery_process("worker", env, tmp_path, name="doomed") as doomed:
        request_id = api.submit(rows)
        deadline = time.monotonic() + 60
        while api.status(request_id)["processed"] < 4:
            assert time.monotonic() < deadline, doomed.tail()
            time.sleep(0.1)
        doomed.kill()
    at_kill = api.status(request_id)
    assert at_kill["processed"] < ROWS, "the worker must die mid-job"

    with celery_process("worker", env, tmp_path, name="rescuer") as rescuer, \
            celery_process("beat", env, tmp_path,
                           extra=["--schedule", str(tmp_path / "beat-schedule")]):
        status = api.wait(request_id, timeout=120, diagnostics=rescuer.tail)

    assert (status["total"], status["processed"], status["failed"]) == (ROWS, ROWS, ROWS)
    report = api.report(status)
    assert sorted(int(r["row"]) for r in report) == list(range(1, ROWS + 1))
    assert {r["smtpErrorCode"] for r in report} == {"connection_timeout"}
    assert max(int(r["attempts"]) for r in report) >= 2, "in-flight rows were re-run"
    with api.services.db.transaction() as session:
        count, distinct = session.execute(
            select(func.count(), func.count(func.distinct(EmailAccount.email)))).one()
    assert count == distinct == ROWS
