"""One fault at a time, against real processes: Celery workers and beat started as the Procfile
starts them, a private Redis per test, the database (PostgreSQL with TEST_DATABASE_URL, as in
CI; SQLite otherwise), and a job of 300 accounts tested against Dovecot behind a proxy that
makes every probe last about half a second, so a fault lands while rows are in flight.

After each fault the job must end exactly as if nothing had happened, within the row lease plus
one sweep interval (plus the margin `recovery_bound` explains) after the fault ended. Each test
prints its recovery time (`pytest -s`) and appends it as one JSON line to
`<pytest's base temp dir>/fault-recovery.jsonl`, for a benchmark-like summary to quote.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import func, make_url, select

from app.models import ConnectJobRow, EmailAccount, RowState
from app.probe import TRANSIENT_CODES
from tests.conftest import USERS
from tests.factories import bulk_row
from tests.servers.counting_proxy import counting_proxy
from tests.servers.outages import RestartableRedis, TcpGate, restartable_redis
from tests.servers.web import web
from tests.servers.worker import Process, celery_process
from tests.workers.conftest import Api

pytestmark = pytest.mark.integration

ROWS = 300
# Seconds the proxy in front of Dovecot holds every chunk: an implicit-TLS login is about ten
# chunks, so one probe takes about half a second, in parallel for SMTP and IMAP.
MAIL_DELAY = 0.05
# Two workers of eight threads: 16 rows in flight, and 30 run_rows messages for 300 rows, so
# some wait in Redis while others run (a fault can lose both kinds).
TIMING = {
    "PROBE_TIMEOUT_SECONDS": "3",
    "ROW_LEASE_SECONDS": "7",  # must exceed twice the probe timeout (Settings)
    "SWEEP_INTERVAL_SECONDS": "1",
    "JOB_STALL_SECONDS": "3",  # below the lease, so a stalled job is revived within the lease
    "WORKER_CONCURRENCY": "8",
    # The per-host cap is not under test; at the default, the slots of a SIGKILLed worker stay
    # taken for PROBE_TIMEOUT + 10 s and would add to recovery (see the hand-back note).
    "PROBE_MAX_PER_HOST": "1000",
}
# What a fault's recovery may take beyond the lease, the sweep and the remaining rows' own
# testing time: a worker (re)started on two shared cores needs a few seconds to import Celery,
# connect and take its first message, and the report is built and uploaded at the end.
STARTUP_SLACK = 8.0
IN_FLIGHT = 2 * int(TIMING["WORKER_CONCURRENCY"])  # rows tested at once by the usual two workers
TRANSIENT = {code.value for code in TRANSIENT_CODES}
WRONG_PASSWORD = "not-the-password"
LOGINS = list(USERS.items())


@dataclass
class Job:
    request_id: str
    rows: list[dict]
    expected: dict[str, str]  # email -> "connected" | "failed", from the passwords given
    submitted: float


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A Redis of this test's own, so restarting or flushing it cannot hurt other tests."""
    with restartable_redis(tmp_path) as redis:
        yield redis


@pytest.fixture
def fault_env(env: dict[str, str], broker: RestartableRedis) -> dict[str, str]:
    env.update(TIMING, REDIS_URL=broker.url)
    return env


@contextmanager
def slow_mail(mail_server, delay: float = MAIL_DELAY) -> Iterator[tuple[int, int]]:
    """Dovecot's implicit-TLS submission and IMAP ports behind proxies that answer slowly."""
    with counting_proxy(mail_server.submissions_port, delay_seconds=delay) as smtp, \
            counting_proxy(mail_server.imaps_port, delay_seconds=delay) as imap:
        yield smtp.port, imap.port


def accounts(smtp_port: int, imap_port: int) -> tuple[list[dict], dict[str, str]]:
    """ROWS distinct accounts logging in as Dovecot's users; every fourth password is wrong."""
    rows, expected = [], {}
    for i in range(ROWS):
        login, password = LOGINS[i % len(LOGINS)]
        good = i % 4 != 0
        email = f"box{i}@faults.test"
        secret = password if good else WRONG_PASSWORD
        rows.append(bulk_row(email, smtpUserName=login, imapUserName=login,
                             smtpPassword=secret, imapPassword=secret,
                             smtpHost="localhost", smtpPort=smtp_port, smtpEncryption="ssl",
                             imapHost="localhost", imapPort=imap_port, imapEncryption="ssl"))
        expected[email] = "connected" if good else "failed"
    return rows, expected


def submit(api: Api, ports: tuple[int, int]) -> Job:
    rows, expected = accounts(*ports)
    submitted = time.monotonic()
    return Job(api.submit(rows), rows, expected, submitted)


def worker(stack: ExitStack, env: dict[str, str], tmp_path: Path, name: str) -> Process:
    return stack.enter_context(celery_process("worker", env, tmp_path, name=name))


def beat(stack: ExitStack, env: dict[str, str], tmp_path: Path) -> Process:
    return stack.enter_context(celery_process(
        "beat", env, tmp_path, extra=["--schedule", str(tmp_path / "beat-schedule")]))


def wait_ready(*processes: Process, timeout: float = 60) -> None:
    """Until each worker has logged that it consumes (Celery's `ready.` line)."""
    deadline = time.monotonic() + timeout
    for process in processes:
        while "ready." not in process.log.read_text(errors="replace"):
            assert process.popen.poll() is None, process.tail()
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.1)


def wait_ready_within(victim: Process, api: Api, job: Job, processed_at_most: int) -> None:
    """Until the victim consumes, or the job has processed that many rows: on a loaded machine
    a Celery start can outlast the job, and a worker killed while it starts is a fault too."""
    while "ready." not in victim.log.read_text(errors="replace"):
        assert victim.popen.poll() is None, victim.tail()
        if api.status(job.request_id)["processed"] >= processed_at_most:
            return
        time.sleep(0.1)


def start_cluster(stack: ExitStack, env: dict[str, str], tmp_path: Path, mail_server,
                  names: tuple[str, ...] = ("w0", "w1"), delay: float = MAIL_DELAY
                  ) -> tuple[tuple[int, int], list[Process], Process]:
    """The slow mail server, the named workers and beat; returns once the workers consume."""
    ports = stack.enter_context(slow_mail(mail_server, delay))
    workers = [worker(stack, env, tmp_path, name) for name in names]
    beat_process = beat(stack, env, tmp_path)
    wait_ready(*workers)
    return ports, workers, beat_process


def wait_processed(api: Api, job: Job, at_least: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while (status := api.status(job.request_id))["processed"] < at_least:
        assert not status["isCompleted"], f"the job ended before the fault: {status}"
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def rate(job: Job, status: dict, at: float) -> float:
    """Rows per second the job made before the fault (from the POST: a conservative figure)."""
    return status["processed"] / (at - job.submitted)


@dataclass
class Recovery:
    """From the moment a fault ended to the job's completion."""

    env: dict[str, str]
    ended: float  # time.monotonic() when the fault ended
    remaining: int  # rows not yet processed then
    rows_per_second: float  # the job's rate before the fault, from the POST (conservative)
    seconds: float | None = None  # set once the job completed

    @property
    def remaining_work(self) -> float:
        """The part of the recovery that is testing the rows still untested, not repair."""
        return self.remaining / self.rows_per_second

    @property
    def bound(self) -> float:
        """Lease plus one sweep interval, plus the margin: the remaining rows' testing time and
        STARTUP_SLACK. A stalled job is revived after JOB_STALL_SECONDS, below the lease."""
        return (int(self.env["ROW_LEASE_SECONDS"]) + float(self.env["SWEEP_INTERVAL_SECONDS"])
                + self.remaining_work + STARTUP_SLACK)


def fault_over(api: Api, job: Job, env: dict[str, str], rows_per_second: float) -> Recovery:
    """Call the moment the fault ends: the recovery clock starts."""
    ended = time.monotonic()
    remaining = ROWS - api.status(job.request_id)["processed"]
    assert remaining > 0, "the job ended before the fault did"
    return Recovery(env, ended, remaining, rows_per_second)


def finish(api: Api, job: Job, recovery: Recovery, *processes: Process) -> dict:
    """Poll until the job completes and time the recovery; fails with the processes' logs if
    it takes over twice the bound (the bound itself is asserted after it is reported)."""
    def diagnostics() -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(30)}" for p in processes)

    status = api.wait(job.request_id, timeout=recovery.ended + 2 * recovery.bound
                      - time.monotonic(), diagnostics=diagnostics)
    recovery.seconds = time.monotonic() - recovery.ended
    return status


def report_recovery(tmp_path_factory, recovery: Recovery, fault: str, **details: object
                    ) -> None:
    """Print the recovery time (`pytest -s`), append it to the run's JSON lines, then hold it
    to its bound."""
    env = recovery.env
    database = make_url(env["DATABASE_URL"]).get_backend_name()
    assert recovery.seconds is not None
    line = {"fault": fault, "database": database, "rows": ROWS,
            "recovery_seconds": round(recovery.seconds, 2),
            "bound_seconds": round(recovery.bound, 2),
            "remaining_rows": recovery.remaining,
            "remaining_work_seconds": round(recovery.remaining_work, 1),
            "lease_seconds": int(env["ROW_LEASE_SECONDS"]),
            "sweep_interval_seconds": float(env["SWEEP_INTERVAL_SECONDS"]), **details}
    path = tmp_path_factory.getbasetemp() / "fault-recovery.jsonl"
    with path.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(f"\nfault recovery [{database}] {fault}: completed {recovery.seconds:.1f}s after the "
          f"fault ended (bound {recovery.bound:.1f}s; {recovery.remaining} rows were left, "
          f"about {recovery.remaining_work:.1f}s of testing); {json.dumps(details)}; "
          f"written to {path}")
    assert recovery.seconds <= recovery.bound


def assert_exact_outcome(api: Api, job: Job, status: dict) -> list[dict[str, str]]:
    """The job ended as if nothing had happened; returns the report for further checks."""
    assert status["isCompleted"] and status["status"] == "completed", status
    good = sum(v == "connected" for v in job.expected.values())
    assert (status["total"], status["processed"], status["succeeded"], status["failed"],
            status["invalid"]) == (ROWS, ROWS, good, ROWS - good, 0), status

    report = api.report(status)
    # Every input row exactly once, in input order, with the verdict its password deserves.
    assert [int(r["row"]) for r in report] == list(range(1, ROWS + 1))
    assert [r["email"] for r in report] == [row["smtpEmailAddress"] for row in job.rows]
    assert {r["email"]: r["status"] for r in report} == job.expected
    failed = [r for r in report if r["status"] == "failed"]
    verdicts = Counter((r["smtpErrorCode"], r["imapErrorCode"]) for r in failed)
    # The fault's load can push a probe in flight past its deadline. Beside an auth failure on
    # the other protocol that timeout stays the verdict (a wrong password is never retried),
    # so a few rows may carry one transient code, never more rows than were in flight.
    assert all("auth_failed" in pair and set(pair) <= {"auth_failed", *TRANSIENT}
               for pair in verdicts), verdicts
    assert verdicts.total() - verdicts[("auth_failed", "auth_failed")] <= IN_FLIGHT, verdicts

    with api.services.db.reading() as session:
        count, distinct = session.execute(
            select(func.count(), func.count(func.distinct(EmailAccount.email)))).one()
        states = dict(session.execute(
            select(ConnectJobRow.state, func.count())
            .where(ConnectJobRow.job_id == job.request_id)
            .group_by(ConnectJobRow.state)).all())
    assert count == distinct == ROWS, "an account was saved twice"
    assert states == {RowState.DONE: ROWS}, "rows left testing, pending or waiting"
    return report


def test_worker_killed_three_times(fault_env, tmp_path, tmp_path_factory, mail_server):
    """SIGKILL: no warm shutdown, no acks; the victim's leased rows and its unacked messages are
    stranded until the sweeper hands them on."""
    env = fault_env
    api = Api(env)
    with ExitStack() as stack:
        ports, (steady, victim), _ = start_cluster(stack, env, tmp_path, mail_server,
                                                   ("steady", "victim-0"))
        job = submit(api, ports)
        wait_processed(api, job, 1)
        at_kills, fault_started, pre_fault_rate = [], 0.0, 0.0
        for kill in range(1, 4):
            # Let the (re)started victim take rows before it dies, so each kill strands work.
            wait_ready_within(victim, api, job, processed_at_most=ROWS * kill // 4)
            time.sleep(1.5)
            victim.kill()
            at_kill = api.status(job.request_id)
            at_kills.append(at_kill["processed"])
            if kill == 1:
                fault_started = time.monotonic()
                pre_fault_rate = rate(job, at_kill, fault_started)
            victim = worker(stack, env, tmp_path, f"victim-{kill}")
        recovery = fault_over(api, job, env, pre_fault_rate)
        status = finish(api, job, recovery, steady, victim)

    report = assert_exact_outcome(api, job, status)
    assert max(int(r["attempts"]) for r in report) >= 2, "no in-flight row was re-run"
    report_recovery(tmp_path_factory, recovery, "worker SIGKILLed 3 times",
                    processed_at_kills=at_kills,
                    fault_seconds=round(recovery.ended - fault_started, 1))


def test_broker_restarts_empty(fault_env, broker, tmp_path, tmp_path_factory, mail_server):
    """Redis without persistence is replaced mid-job: every queued and unacked message is gone,
    and every client's connection breaks. The database still knows what is left to do."""
    env = fault_env
    api = Api(env)
    with ExitStack() as stack:
        ports, workers, beat_process = start_cluster(stack, env, tmp_path, mail_server)
        job = submit(api, ports)
        before = wait_processed(api, job, ROWS // 4)
        fault_started = time.monotonic()
        pre_fault_rate = rate(job, before, fault_started)
        lost = broker_messages(broker)
        broker.restart_empty()
        recovery = fault_over(api, job, env, pre_fault_rate)
        # Workers go on while the broker is replaced, and may already have published to the
        # new one (a runner's successor): none of the old messages may be there.
        assert not broker_messages(broker) & lost
        status = finish(api, job, recovery, *workers, beat_process)
        assert all(w.popen.poll() is None for w in workers), "a worker died with the broker"

    assert lost, "the broker held no messages to lose: the fault came too late"
    assert_exact_outcome(api, job, status)
    report_recovery(tmp_path_factory, recovery, "broker restarted empty",
                    processed_at_fault=before["processed"], messages_lost=len(lost))


def broker_messages(broker: RestartableRedis) -> set[bytes]:
    """Messages waiting in the job queues (each by its body, which carries its task id) and
    those delivered but not acknowledged (by delivery tag)."""
    client = redis.Redis.from_url(broker.url)
    try:
        return {*client.lrange("mailconnect.probe", 0, -1),
                *client.lrange("mailconnect.control", 0, -1), *client.hkeys("unacked")}
    finally:
        client.close()


@contextmanager
def database_outage(database_url: str, gate: TcpGate | None) -> Iterator[None]:
    """PostgreSQL: the gate refuses new connections and resets open ones. SQLite has no server
    to go down; its nearest fault is another process holding the write lock, so every writer
    waits (up to its busy timeout) while readers go on."""
    if gate is not None:
        gate.close()
        try:
            yield
        finally:
            gate.open()
        return
    holder = sqlite3.connect(make_url(database_url).database, timeout=60, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_database_down_for_ten_seconds(fault_env, tmp_path, tmp_path_factory, mail_server):
    """Workers retry without dying; the web process answers polls with 503 JSON naming the
    database, with Retry-After, and never a 500 or a traceback."""
    env = fault_env
    api = Api(env)  # the test's own view of the database, not behind the gate
    url = make_url(env["DATABASE_URL"])
    on_postgres = url.get_backend_name() == "postgresql"
    outage_seconds = 10
    with ExitStack() as stack:
        gate = None
        if on_postgres:
            gate = stack.enter_context(TcpGate(url.port or 5432, url.host or "127.0.0.1"))
            gated = url.set(host="127.0.0.1", port=gate.port)
            env = {**env, "DATABASE_URL": gated.render_as_string(hide_password=False)}
        ports, workers, _ = start_cluster(stack, env, tmp_path, mail_server)
        base, web_process = stack.enter_context(web(env, tmp_path))
        pids = [w.popen.pid for w in workers]
        job = submit(api, ports)
        poll = f"{base}/v1/email-accounts/connect/status/{job.request_id}"
        headers = {"x-api-key": api.key}
        before = wait_processed(api, job, ROWS // 4)
        assert requests.get(poll, headers=headers, timeout=10).status_code == 200
        fault_started = time.monotonic()
        pre_fault_rate = rate(job, before, fault_started)
        answers: list[requests.Response] = []
        with database_outage(env["DATABASE_URL"], gate):
            while time.monotonic() < fault_started + outage_seconds:
                answers.append(requests.get(poll, headers=headers, timeout=60))
                time.sleep(0.25)
        recovery = fault_over(api, job, env, pre_fault_rate)
        status = finish(api, job, recovery, *workers)
        after = requests.get(poll, headers=headers, timeout=10)
        assert [w.popen.poll() for w in workers] == [None, None], "a worker process died"
        assert [w.popen.pid for w in workers] == pids

    codes = Counter(a.status_code for a in answers)
    assert set(codes) <= {200, 503}, codes
    assert all(a.headers["Content-Type"].startswith("application/json") for a in answers)
    unavailable = [a for a in answers if a.status_code == 503]
    for answer in unavailable:
        assert "database" in answer.json()["message"], answer.json()
        assert int(answer.headers["Retry-After"]) > 0
    if on_postgres:
        assert unavailable, f"no poll saw the database down: {codes}"
    assert after.status_code == 200 and after.json()["payload"]["isCompleted"]
    assert "Traceback" not in web_process.log.read_text(errors="replace")
    assert_exact_outcome(api, job, status)
    report_recovery(tmp_path_factory, recovery, "database down 10 s",
                    processed_at_fault=before["processed"],
                    polls=dict(sorted(codes.items())))


def test_worker_sigterm_mid_job(fault_env, tmp_path, tmp_path_factory, mail_server):
    """A deploy: SIGTERM (Celery's warm shutdown finishes what it runs and hands back what it
    holds), wait for the process to exit, start the new one."""
    env = fault_env
    api = Api(env)
    with ExitStack() as stack:
        ports, (steady, old), _ = start_cluster(stack, env, tmp_path, mail_server,
                                                ("steady", "old"))
        job = submit(api, ports)
        before = wait_processed(api, job, ROWS // 4)
        fault_started = time.monotonic()
        pre_fault_rate = rate(job, before, fault_started)
        os.killpg(old.popen.pid, signal.SIGTERM)
        exit_code = old.popen.wait(timeout=60)
        new = worker(stack, env, tmp_path, "new")
        recovery = fault_over(api, job, env, pre_fault_rate)
        status = finish(api, job, recovery, steady, new)

    assert exit_code == 0, old.tail()
    assert_exact_outcome(api, job, status)
    report_recovery(tmp_path_factory, recovery, "worker SIGTERMed (deploy)",
                    processed_at_fault=before["processed"],
                    shutdown_seconds=round(recovery.ended - fault_started, 1))


RECEIVED = re.compile(r"Task (mailconnect\.\w+)\[([0-9a-f-]+)\] received")


def redelivered(*processes: Process) -> list[str]:
    """Task ids some worker received more than once, from the workers' own logs."""
    seen = Counter(match.groups() for p in processes
                   for match in RECEIVED.finditer(p.log.read_text(errors="replace")))
    return sorted(f"{name}[{task_id}]" for (name, task_id), n in seen.items() if n > 1)


def test_task_outlives_visibility_timeout(fault_env, tmp_path, tmp_path_factory, mail_server):
    """A run_rows message tests ten rows one after another; with probes of about a second that
    outlasts an 8 s visibility timeout, so Redis hands the same message out again while the
    first delivery still runs. The duplicate must change nothing."""
    # Settings keep the lease and the retry ceiling below the visibility timeout.
    env = {**fault_env, "BROKER_VISIBILITY_TIMEOUT": "8", "PROBE_RETRY_BACKOFF_MAX_SECONDS": "5"}
    api = Api(env)
    with ExitStack() as stack:
        ports, workers, _ = start_cluster(stack, env, tmp_path, mail_server,
                                          delay=2 * MAIL_DELAY)
        job = submit(api, ports)
        deadline = time.monotonic() + 120
        while not (twice := redelivered(*workers)):
            status = api.status(job.request_id)
            assert not status["isCompleted"], "the job ended before any redelivery"
            assert time.monotonic() < deadline, workers[0].tail()
            time.sleep(0.2)
        # The first duplicate delivery is the fault; the rate is the job's until then.
        at_fault = api.status(job.request_id)
        recovery = fault_over(api, job, env, rate(job, at_fault, time.monotonic()))
        status = finish(api, job, recovery, *workers)
        twice = redelivered(*workers)

    assert_exact_outcome(api, job, status)
    report_recovery(tmp_path_factory, recovery, "task redelivered after visibility timeout",
                    visibility_timeout_seconds=8, tasks_delivered_twice=len(twice))
