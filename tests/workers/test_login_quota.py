"""The team login quota with a real worker: rows past it wait, then finish; none fails."""

import time

import pytest
from sqlalchemy import select

from app.models import ConnectJobRow
from tests.conftest import USERS
from tests.factories import bulk_row
from tests.servers.worker import celery_process

pytestmark = pytest.mark.integration


def test_rows_past_the_quota_wait_then_finish(api, env, tmp_path, mail_server):
    # Two account tests (four logins) per 3 s window: six accounts take three windows.
    env.update(TEAM_MAX_LOGINS_PER_HOUR="4", TEAM_LOGIN_WINDOW_SECONDS="3",
               WORKER_CONCURRENCY="4")
    rows = [bulk_row(user, smtpPassword=password, imapPassword=password, smtpHost="localhost",
                     smtpPort=mail_server.submission_port, smtpEncryption="starttls",
                     imapHost="localhost", imapPort=mail_server.imaps_port,
                     imapEncryption="ssl")
            for user, password in USERS.items()]
    seen_waiting = []
    with celery_process("worker", env, tmp_path) as worker:
        request_id = api.submit(rows)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = api.status(request_id)
            if status["waiting"] is not None:
                seen_waiting.append((status["waiting"], status["processed"]))
            if status["isCompleted"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"not completed: {status}\n{worker.tail()}")

    assert (status["status"], status["succeeded"], status["failed"]) == ("completed", 6, 0)
    assert status["waiting"] is None
    assert seen_waiting, "the status showed the wait"
    waiting, processed = seen_waiting[0]
    assert waiting["reason"] == "team_login_quota" and waiting["resumesAt"].endswith("Z")
    assert waiting["rows"] == 6 - processed and processed < 6
    with api.services.db.reading() as session:
        attempts = session.scalars(select(ConnectJobRow.attempts)
                                   .where(ConnectJobRow.job_id == request_id)).all()
    assert attempts == [1] * 6, "waiting for the quota never counted as an attempt"
    assert all(r["status"] == "connected" for r in api.report(status))
