import csv
import datetime as dt
import io
import threading
from dataclasses import replace

import pytest
import requests
from sqlalchemy import func, select

from app.jobs.finish import finish_job
from app.jobs.hostgate import OpenGate
from app.jobs.intake import submit_job
from app.jobs.runner import (
    ClaimedRow,
    RetryPolicy,
    RowProcessor,
    claim_next_row,
    claim_row,
    record_result,
    runners_for,
    start_job,
)
from app.jobs.status import job_view
from app.jobs.sweeper import sweep
from app.models import ConnectJobRow, EmailAccount, RowState
from app.probe.model import AccountProbe, ErrorCode, ProtocolResult
from app.teams import create_api_key
from tests.factories import bulk_row

OK = ProtocolResult("ok", duration_ms=5)


class FakeProber:
    """Verifies every mailbox except those whose SMTP host starts with 'bad'."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def probe_sync(self, smtp, imap):
        with self.lock:
            self.calls.append((smtp, imap))
        if smtp.host.startswith("bad"):
            failed = ProtocolResult("failed", ErrorCode.AUTH_FAILED, "535 5.7.8 not accepted")
            return AccountProbe(smtp=failed, imap=OK, duration_ms=7)
        return AccountProbe(smtp=OK, imap=OK, duration_ms=7)


class FakeClock:
    def __init__(self) -> None:
        self.current = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def submit(services, team_id, rows):
    return submit_job(services.db, services.cipher, services.clock, team_id, rows)


def processor(services, prober, clock=None, policy=None, gate=None) -> RowProcessor:
    return RowProcessor(db=services.db, clock=clock or services.clock, cipher=services.cipher,
                        prober=prober, gate=gate or OpenGate(),
                        policy=policy or RetryPolicy(), lease_seconds=60)


def run_all(services, job_id, prober, clock=None):
    rows = processor(services, prober, clock)
    return [rows.process(row_id).job_finished
            for row_id in start_job(services.db, clock or services.clock, job_id)]


def test_job_runs_to_completion_with_report(services, team_id):
    rows = [bulk_row("a@example.com"), bulk_row("b@example.com", smtpHost="bad.example.com"),
            bulk_row("nope"), bulk_row("a@example.com")]
    job = submit(services, team_id, rows)
    prober = FakeProber()
    finished = run_all(services, job.job_id, prober)
    assert finished == [False, True]
    assert "s3cret" not in repr(prober.calls)

    assert finish_job(services.db, services.clock, services.store, job.job_id)
    view = job_view(services.db, team_id, job.job_id)
    assert (view.status, view.processed, view.succeeded, view.failed, view.invalid) == (
        "completed", 4, 1, 1, 2)
    assert view.progress == 100.0

    url = services.store.download_url(view.report_key, 60)
    report = list(csv.DictReader(io.StringIO(requests.get(url, timeout=10).text)))
    assert [r["row"] for r in report] == ["1", "2", "3", "4"]
    assert [r["status"] for r in report] == ["connected", "failed", "invalid", "invalid"]
    assert report[0]["accountStatus"] == "1" and report[0]["smtpResult"] == "ok"
    assert report[1]["smtpErrorCode"] == "auth_failed" and report[1]["accountStatus"] == "0"
    assert report[1]["errorCode"] == "auth_failed"
    assert report[1]["hint"] and "App Password" in report[1]["hint"], "zoho hint for auth_failed"
    assert report[0]["hint"] == ""
    assert report[2]["hint"].startswith("Fix the fields")
    assert report[2]["errorCode"] == "invalid_fields"
    assert "smtpEmailAddress: is not a valid email address" in report[2]["validationErrors"]
    assert report[2]["smtpResult"] == "skipped" and report[2]["accountId"] == ""
    assert report[3]["errorCode"] == "duplicate_in_request"
    assert "s3cret" not in requests.get(url, timeout=10).text

    with services.db.transaction() as session:
        accounts = session.scalars(select(EmailAccount).order_by(EmailAccount.email)).all()
        assert [(a.email, a.status) for a in accounts] == [("a@example.com", 1),
                                                           ("b@example.com", 0)]
        assert accounts[1].smtp_error_code == "auth_failed"
        assert "s3cret" not in accounts[0].credentials
        assert services.cipher.decrypt(accounts[0].credentials)["smtp"].reveal() == "s3cret-smtp"
        leftover = session.scalar(select(func.count()).select_from(ConnectJobRow)
                                  .where(ConnectJobRow.credentials.is_not(None)))
        assert leftover == 0, "done rows must not keep a copy of the credentials"


def test_reimport_updates_the_account_instead_of_duplicating(services, team_id):
    for host in ("bad.example.com", "smtp.example.com"):
        job = submit(services, team_id, [bulk_row("a@example.com", smtpHost=host)])
        run_all(services, job.job_id, FakeProber())
    with services.db.transaction() as session:
        accounts = session.scalars(select(EmailAccount)).all()
    assert [(a.email, a.status, a.smtp_host) for a in accounts] == [
        ("a@example.com", 1, "smtp.example.com")]


def test_start_is_idempotent(services, team_id):
    job = submit(services, team_id, [bulk_row()])
    assert len(start_job(services.db, services.clock, job.job_id)) == 1
    assert start_job(services.db, services.clock, job.job_id) == []


def test_a_claimed_row_is_not_claimed_twice_until_its_lease_expires(services, team_id):
    clock = FakeClock()
    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, clock, job.job_id)
    first = claim_row(services.db, clock, 60, row_id)
    assert first is not None and first.attempt == 1
    assert claim_row(services.db, clock, 60, row_id) is None
    clock.advance(61)
    second = claim_row(services.db, clock, 60, row_id)
    assert second is not None and second.attempt == 2

    probe = AccountProbe(smtp=OK, imap=OK, duration_ms=1)
    late = record_result(services.db, clock, first, probe)
    assert not late.recorded, "a worker that lost its lease must not record"
    assert record_result(services.db, clock, second, probe).job_finished
    view = job_view(services.db, team_id, job.job_id)
    assert (view.processed, view.succeeded) == (1, 1)


def test_sweeper_requeues_expired_leases_and_stalled_jobs(services, team_id):
    clock = FakeClock()
    job = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com")])
    row_a, row_b = start_job(services.db, clock, job.job_id)
    claim_row(services.db, clock, 60, row_a)  # its worker dies here
    assert sweep(services.db, clock, stall_seconds=300).rows_to_probe == []

    clock.advance(61)
    assert sweep(services.db, clock, stall_seconds=300).rows_to_probe == [row_a]

    clock.advance(300)
    actions = sweep(services.db, clock, stall_seconds=300)
    assert sorted(actions.rows_to_probe) == [row_a, row_b]
    assert sweep(services.db, clock, stall_seconds=300).rows_to_probe == [row_a], (
        "a stalled job is re-announced once per stall period")

    for row_id in (row_a, row_b):
        processor(services, FakeProber(), clock).process(row_id)
    clock.advance(301)
    assert sweep(services.db, clock, stall_seconds=300).jobs_to_finish == [job.job_id]


def test_sweeper_starts_forgotten_queued_jobs(services, team_id):
    clock = FakeClock()
    services.clock = clock
    job = submit(services, team_id, [bulk_row()])
    clock.advance(301)
    assert sweep(services.db, clock, stall_seconds=300).jobs_to_start == [job.job_id]


def test_finish_waits_until_every_row_is_final(services, team_id):
    job = submit(services, team_id, [bulk_row()])
    assert not finish_job(services.db, services.clock, services.store, job.job_id)
    run_all(services, job.job_id, FakeProber())
    assert finish_job(services.db, services.clock, services.store, job.job_id)
    assert not finish_job(services.db, services.clock, services.store, job.job_id)


class FlakyProber:
    """Answers with the given results in turn, per protocol, and records what it was asked."""

    def __init__(self, smtp_results, imap_results) -> None:
        self.smtp_results, self.imap_results = list(smtp_results), list(imap_results)
        self.asked: list[tuple[bool, bool]] = []

    def probe_sync(self, smtp, imap):
        self.asked.append((smtp is not None, imap is not None))
        smtp_result = self.smtp_results.pop(0) if smtp else ProtocolResult.skipped()
        imap_result = self.imap_results.pop(0) if imap else ProtocolResult.skipped()
        return AccountProbe(smtp=smtp_result, imap=imap_result, duration_ms=3)


def failed(code: ErrorCode) -> ProtocolResult:
    return ProtocolResult("failed", code, f"{code} happened")


def test_transient_failure_is_retried_and_only_the_failed_protocol_retested(services, team_id):
    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, services.clock, job.job_id)
    prober = FlakyProber([OK], [failed(ErrorCode.SERVER_THROTTLED), OK])
    clock = FakeClock()
    rows = processor(services, prober, clock=clock,
                     policy=RetryPolicy(attempts=3, backoff_seconds=4))

    first = rows.process(row_id)
    assert not first.recorded and 2 <= first.retry_in <= 4 and first.row_id == row_id
    assert job_view(services.db, team_id, job.job_id).processed == 0
    assert rows.process_next(job.job_id) is None, "not taken again before its retry is due"
    assert not rows.process(row_id).recorded
    clock.advance(first.retry_in + 0.01)
    second = rows.process(row_id)
    assert second.recorded and second.job_finished
    assert prober.asked == [(True, True), (False, True)], "SMTP passed once: not logged in again"
    with services.db.transaction() as session:
        row = session.get(ConnectJobRow, row_id)
        assert (row.state, row.attempts, row.smtp_result, row.imap_result) == (
            "done", 2, "ok", "ok")
        assert session.scalar(select(EmailAccount.status)) == 1


@pytest.mark.parametrize("code", [ErrorCode.AUTH_FAILED, ErrorCode.TLS_CERTIFICATE_INVALID,
                                  ErrorCode.ACCOUNT_LOCKED, ErrorCode.APP_PASSWORD_REQUIRED])
def test_auth_and_tls_failures_are_never_retried(services, team_id, code):
    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, services.clock, job.job_id)
    prober = FlakyProber([failed(code)], [failed(ErrorCode.CONNECTION_TIMEOUT)])
    outcome = processor(services, prober).process(row_id)
    assert outcome.recorded and outcome.retry_in is None
    assert len(prober.asked) == 1


def test_retries_stop_at_the_configured_attempts(services, team_id):
    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, services.clock, job.job_id)
    timeout = failed(ErrorCode.CONNECTION_TIMEOUT)
    prober = FlakyProber([timeout] * 3, [OK])
    rows = processor(services, prober, policy=RetryPolicy(attempts=3, backoff_seconds=0))
    outcomes = [rows.process(row_id) for _ in range(3)]
    assert [o.recorded for o in outcomes] == [False, False, True]
    with services.db.transaction() as session:
        row = session.get(ConnectJobRow, row_id)
        assert (row.attempts, row.smtp_error_code, row.account_status) == (
            3, "connection_timeout", 0)


def test_dns_failure_is_retried_once_only():
    policy = RetryPolicy(attempts=5, backoff_seconds=1)
    dns = AccountProbe(smtp=failed(ErrorCode.DNS_NOT_FOUND), imap=OK, duration_ms=1)
    assert policy.retry_delay(dns, attempt=1) is not None
    assert policy.retry_delay(dns, attempt=2) is None


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    policy = RetryPolicy(attempts=10, backoff_seconds=2, backoff_max_seconds=10)
    closed = AccountProbe(smtp=failed(ErrorCode.CONNECTION_CLOSED), imap=OK, duration_ms=1)
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8), (4, 10), (8, 10)):
        delays = {policy.retry_delay(closed, attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jittered"


def test_a_busy_host_sets_the_row_aside_and_its_attempt_does_not_count(services, team_id):
    class BusyGate:
        def acquire(self, hosts):
            from app.jobs.hostgate import GateDecision
            self.hosts = hosts
            return GateDecision(None, 1.5)

        def release(self, lease):
            raise AssertionError("nothing to release")

    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, services.clock, job.job_id)
    gate = BusyGate()
    prober = FakeProber()
    clock = FakeClock()
    rows = processor(services, prober, gate=gate, clock=clock)
    outcome = rows.process(row_id)
    assert (outcome.recorded, outcome.row_id, outcome.retry_in) == (False, row_id, 1.5)
    assert gate.hosts == ["smtp.example.com", "imap.example.com"]
    assert prober.calls == []
    with services.db.transaction() as session:
        row = session.get(ConnectJobRow, row_id)
        assert (row.state, row.attempts) == (RowState.TESTING, 0)
    assert rows.process_next(job.job_id) is None, "set aside: runners pass it by"
    clock.advance(1.6)
    assert processor(services, prober, clock=clock).process(row_id).recorded


def test_a_retry_asks_only_for_the_hosts_it_will_contact():
    settings = {"smtp": {"host": "smtp.example.com"}, "imap": {"host": "imap.example.com"}}
    claim = ClaimedRow(1, "job", 1, 2, settings, "token", verified=frozenset({"smtp"}))
    assert claim.hosts == ["imap.example.com"]
    assert replace(claim, verified=frozenset()).hosts == ["smtp.example.com", "imap.example.com"]


def test_runners_take_a_jobs_pending_rows_in_order_each_row_once(services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(40)])
    row_ids = start_job(services.db, services.clock, job.job_id)
    taken: list[int] = []
    lock = threading.Lock()

    def runner() -> None:
        while claim := claim_next_row(services.db, services.clock, 60, job.job_id):
            with lock:
                taken.append(claim.row_id)

    first = claim_next_row(services.db, services.clock, 60, job.job_id)
    assert first.row_id == row_ids[0], "request order"
    threads = [threading.Thread(target=runner) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted([first.row_id, *taken]) == sorted(row_ids)


def test_process_next_tests_the_next_row_and_says_when_none_is_left(services, team_id):
    job = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com")])
    start_job(services.db, services.clock, job.job_id)
    rows = processor(services, FakeProber())
    assert rows.process_next(job.job_id).recorded
    last = rows.process_next(job.job_id)
    assert last.recorded and last.job_finished
    assert rows.process_next(job.job_id) is None


@pytest.mark.parametrize(("pending", "expected"), [
    (0, 0), (1, 1), (60, 60), (100, 100), (500, 100), (1000, 100), (5000, 500), (50001, 5001)])
def test_runner_count_fills_every_thread_then_caps_messages(pending, expected):
    assert runners_for(pending, concurrency=100, rows_per_runner=10) == expected
