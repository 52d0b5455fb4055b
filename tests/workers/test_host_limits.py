"""Politeness: the per-host cap holds across worker processes, and a capped or stuck host
does not idle the workers: other hosts' rows keep flowing."""

import socket

import pytest
from sqlalchemy import select

from app.models import ConnectJobRow
from tests.factories import bulk_row
from tests.servers.counting_proxy import counting_proxy
from tests.servers.worker import celery_process

pytestmark = pytest.mark.integration

ACCOUNTS = 40
CAP = 3


@pytest.fixture(scope="module")
def many_users():
    return {f"cap{i}@example.test": f"cap-pw-{i}" for i in range(ACCOUNTS)}


@pytest.fixture(scope="module")
def crowd_server(tmp_path_factory, pki, many_users):
    from tests.servers.dovecot import start_mail_server

    with start_mail_server(tmp_path_factory.mktemp("crowd"), pki, many_users) as server:
        yield server


def test_cap_holds_across_two_worker_processes(api, env, tmp_path, crowd_server, many_users):
    env.update(PROBE_MAX_PER_HOST="50", PROBE_HOST_LIMITS=f"127.0.0.1={CAP}",
               WORKER_CONCURRENCY="10")
    with counting_proxy(crowd_server.imaps_port) as imap_sessions:
        rows = [bulk_row(user, smtpPassword=password, imapPassword=password,
                         smtpHost="localhost", smtpPort=crowd_server.submission_port,
                         smtpEncryption="starttls",
                         imapHost="127.0.0.1", imapPort=imap_sessions.port,
                         imapEncryption="ssl")
                for user, password in many_users.items()]
        with celery_process("worker", env, tmp_path, name="w1") as w1, \
                celery_process("worker", env, tmp_path, name="w2"):
            request_id = api.submit(rows)
            status = api.wait(request_id, timeout=180, diagnostics=w1.tail)
    assert status["succeeded"] == ACCOUNTS
    assert imap_sessions.total == ACCOUNTS
    assert 2 <= imap_sessions.peak <= CAP, imap_sessions
    with api.services.db.reading() as session:
        claims, attempts = zip(*session.execute(
            select(ConnectJobRow.claims, ConnectJobRow.attempts)
            .where(ConnectJobRow.job_id == request_id)).all(), strict=True)
    # Rows wait on the host's list until a slot frees instead of being polled: a row is
    # claimed again only when woken, and waiting never counts as an attempt.
    assert sum(claims) < 1.5 * ACCOUNTS, claims
    assert set(attempts) == {1}


def test_a_stuck_host_does_not_idle_the_workers(api, env, tmp_path, mail_server):
    env.update(PROBE_TIMEOUT_SECONDS="1", ROW_LEASE_SECONDS="5", PROBE_RETRY_ATTEMPTS="1",
               PROBE_HOST_LIMITS="127.0.0.1=1", WORKER_CONCURRENCY="2")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        stuck = [bulk_row(f"stuck{i}@example.test", smtpHost="127.0.0.1",
                          smtpPort=silent.getsockname()[1], smtpEncryption="starttls",
                          imapHost="127.0.0.1", imapPort=mail_server.imaps_port,
                          imapEncryption="ssl") for i in range(4)]
        flowing = [bulk_row("alice@example.test", smtpPassword="x", imapPassword="x",
                            smtpHost="localhost", smtpPort=mail_server.submission_port,
                            smtpEncryption="starttls", imapHost="localhost",
                            imapPort=mail_server.imaps_port, imapEncryption="ssl")]
        flowing += [bulk_row(f"flow{i}@example.test", smtpHost="localhost",
                             smtpPort=mail_server.submission_port, smtpEncryption="starttls",
                             imapHost="localhost", imapPort=mail_server.imaps_port,
                             imapEncryption="ssl") for i in range(19)]
        with celery_process("worker", env, tmp_path) as worker:
            request_id = api.submit(stuck + flowing)
            api.wait(request_id, timeout=120, diagnostics=worker.tail)

    with api.services.db.transaction() as session:
        finished = dict(session.execute(
            select(ConnectJobRow.email, ConnectJobRow.finished_at)
            .where(ConnectJobRow.job_id == request_id)).all())
    stuck_done = sorted(finished[r["smtpEmailAddress"]] for r in stuck)
    flowing_done = max(finished[r["smtpEmailAddress"]] for r in flowing)
    # The stuck host takes its rows one at a time, a second each; the other host's twenty
    # rows all finish while it is still busy.
    assert (stuck_done[-1] - stuck_done[0]).total_seconds() >= 2.5
    assert flowing_done < stuck_done[-1]
