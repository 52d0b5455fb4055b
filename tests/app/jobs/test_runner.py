import csv
import io
import threading
from dataclasses import replace

import fakeredis
import pytest
import requests
from sqlalchemy import delete, event, func, select, update

from app.accounts.management import delete_account, update_account
from app.accounts.slots import HostSlots
from app.jobs.finish import finish_job
from app.jobs.hostgate import GateDecision, HostLease, OpenGate, RedisHostGate
from app.jobs.intake import submit_job, submit_reconnect
from app.jobs.runner import (
    ClaimedRow,
    RetryPolicy,
    RowProcessor,
    claim_next_row,
    claim_row,
    record_result,
    runners_for,
    set_aside,
    start_job,
)
from app.jobs.status import job_view
from app.jobs.sweeper import sweep
from app.models import ConnectJobRow, EmailAccount, JobErrorCount, RowState
from app.probe.model import AccountProbe, ErrorCode, ProtocolResult
from app.teams import create_api_key
from tests.app.jobs.doubles import OK, FakeClock, FakeProber, RecordingQueue
from tests.factories import bulk_row


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def submit(services, team_id, rows):
    return submit_job(services.db, services.cipher, services.clock, team_id, rows,
                      policy=services.settings.host_policy)


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


def stored_hosts(services) -> list[tuple[str, str]]:
    with services.db.reading() as session:
        return [(a.email, a.smtp_host) for a in session.scalars(select(EmailAccount))]


def test_a_row_never_saves_over_settings_submitted_after_its_job(services, team_id):
    seed = submit(services, team_id, [bulk_row("a@example.com", smtpHost="seed.example.com")])
    run_all(services, seed.job_id, FakeProber())
    account_id = row(services, _first_row_id(services, seed.job_id)).account_id
    job = submit(services, team_id, [bulk_row("a@example.com", smtpHost="job.example.com")])
    # A PATCH after the job's POST, before its row is tested: the user's latest word.
    update_account(services.db, services.cipher, services.clock, FakeProber(), team_id,
                   account_id, {"smtpHost": "patched.example.com"},
                   slots=HostSlots(OpenGate(), 1))
    run_all(services, job.job_id, FakeProber())

    assert stored_hosts(services) == [("a@example.com", "patched.example.com")]
    tested = row(services, _first_row_id(services, job.job_id))
    assert (tested.state, tested.account_status, tested.account_id) == (
        RowState.DONE, 1, account_id), "the row keeps its own result and names the account"


def test_the_later_submission_wins_whichever_job_finishes_last(services, team_id):
    older = submit(services, team_id, [bulk_row("a@example.com", smtpHost="older.example.com")])
    newer = submit(services, team_id, [bulk_row("a@example.com", smtpHost="newer.example.com")])
    run_all(services, newer.job_id, FakeProber())
    run_all(services, older.job_id, FakeProber())
    assert stored_hosts(services) == [("a@example.com", "newer.example.com")]


def test_an_account_saved_before_submissions_were_dated_takes_any_submission(services,
                                                                             team_id):
    older = submit(services, team_id, [bulk_row("a@example.com", smtpHost="older.example.com")])
    newer = submit(services, team_id, [bulk_row("a@example.com", smtpHost="newer.example.com")])
    run_all(services, newer.job_id, FakeProber())
    with services.db.transaction() as session:
        # As migration 0009 leaves an account saved before it: no date to compare with.
        session.execute(update(EmailAccount).values(settings_submitted_at=None))
    run_all(services, older.job_id, FakeProber())
    assert stored_hosts(services) == [("a@example.com", "older.example.com")]


def _seeded_accounts(services, team_id) -> dict[str, int]:
    seed = submit(services, team_id, [bulk_row("a@example.com"),
                                      bulk_row("b@example.com", smtpHost="seed.example.com")])
    run_all(services, seed.job_id, FakeProber())
    return {a.email: a.id for a in accounts_of(services)}


def _report(services, team_id, job_id) -> list[dict[str, str]]:
    assert finish_job(services.db, services.clock, services.store, job_id)
    return list(csv.DictReader(io.StringIO(requests.get(services.store.download_url(
        job_view(services.db, team_id, job_id).report_key, 60), timeout=10).text)))


def test_a_delete_after_the_jobs_post_wins_and_its_rows_are_not_tested(services, team_id):
    ids = _seeded_accounts(services, team_id)
    job = submit(services, team_id, [bulk_row("a@example.com"),
                                     bulk_row("b@example.com", smtpHost="bad.example.com"),
                                     bulk_row("c@example.com")])
    # Deleted after the POST, before the rows are tested: the user's latest word.
    for account_id in ids.values():
        assert delete_account(services.db, services.clock, team_id, account_id)
    prober = FakeProber()
    assert run_all(services, job.job_id, prober) == [False, False, True]

    assert [smtp.username for smtp, _ in prober.calls] == ["c@example.com"], (
        "a deleted account's mailbox was logged into")
    assert [a.email for a in accounts_of(services)] == ["c@example.com"], (
        "a row brought a deleted account back")
    done = [row(services, row_id) for row_id in _row_ids(services, job.job_id)]
    assert [(r.state, r.account_id is None, r.account_status, r.error_code, r.smtp_result,
             r.credentials) for r in done] == [
        (RowState.DONE, True, 0, "account_deleted", None, None),
        (RowState.DONE, True, 0, "account_deleted", None, None),
        (RowState.DONE, False, 1, None, "ok", None)]
    assert error_counts(services, job.job_id) == {"account_deleted": 2}
    view = job_view(services.db, team_id, job.job_id)
    assert (view.processed, view.succeeded, view.failed) == (3, 1, 2)
    assert [(r["status"], r["errorCode"], r["smtpResult"])
            for r in _report(services, team_id, job.job_id)] == [
        ("failed", "account_deleted", "skipped"), ("failed", "account_deleted", "skipped"),
        ("connected", "", "ok")]

    later = submit(services, team_id, [bulk_row("a@example.com")])
    run_all(services, later.job_id, FakeProber())
    assert [a.email for a in accounts_of(services)] == ["a@example.com", "c@example.com"], (
        "a job submitted after the deletion adds the account back")


def test_a_delete_during_a_rows_test_wins_and_the_row_keeps_what_it_found(services, team_id):
    ids = _seeded_accounts(services, team_id)
    job = submit(services, team_id, [bulk_row("a@example.com"),
                                     bulk_row("b@example.com", smtpHost="bad.example.com")])

    def deleting(email):
        return lambda: delete_account(services.db, services.clock, team_id, ids[email])

    prober = HookedProber({0: deleting("a@example.com"), 1: deleting("b@example.com")})
    run_all(services, job.job_id, prober)

    assert len(prober.calls) == 2 and accounts_of(services) == []
    done = [row(services, row_id) for row_id in _row_ids(services, job.job_id)]
    assert [(r.state, r.account_id, r.account_status, r.error_code, r.smtp_error_code)
            for r in done] == [(RowState.DONE, None, 0, "account_deleted", None),
                               (RowState.DONE, None, 0, "account_deleted", "auth_failed")]
    assert [r.smtp_result for r in done] == ["ok", "failed"], "the rows keep what they found"
    assert error_counts(services, job.job_id) == {"account_deleted": 2}
    assert [(r["status"], r["errorCode"], r["smtpResult"])
            for r in _report(services, team_id, job.job_id)] == [
        ("failed", "account_deleted", "ok"), ("failed", "account_deleted", "failed")]


def accounts_of(services) -> list[EmailAccount]:
    with services.db.reading() as session:
        return list(session.scalars(select(EmailAccount).order_by(EmailAccount.email)))


def _row_ids(services, job_id) -> list[int]:
    with services.db.reading() as session:
        return list(session.scalars(select(ConnectJobRow.id).where(
            ConnectJobRow.job_id == job_id).order_by(ConnectJobRow.row_no)))


def _first_row_id(services, job_id) -> int:
    with services.db.reading() as session:
        return session.scalars(select(ConnectJobRow.id).where(
            ConnectJobRow.job_id == job_id).order_by(ConnectJobRow.row_no)).first()


def test_start_is_idempotent(services, team_id):
    job = submit(services, team_id, [bulk_row()])
    assert len(start_job(services.db, services.clock, job.job_id)) == 1
    assert start_job(services.db, services.clock, job.job_id) == []


def test_a_claimed_row_is_not_claimed_twice_and_a_late_worker_cannot_write(services, team_id):
    clock = FakeClock()
    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, clock, job.job_id)
    first = claim_row(services.db, clock, 60, row_id)
    assert first is not None and (first.attempt, first.claims) == (1, 1)
    assert claim_row(services.db, clock, 60, row_id) is None
    clock.advance(61)
    assert claim_row(services.db, clock, 60, row_id) is None, (
        "an expired lease is the sweeper's to hand back, not a claim's")
    assert sweep(services.db, clock, stall_seconds=300, concurrency=100).rows_revived == 1
    second = claim_row(services.db, clock, 60, row_id)
    assert second is not None and (second.attempt, second.claims) == (2, 2)

    probe = AccountProbe(smtp=OK, imap=OK, duration_ms=1)
    late = record_result(services.db, clock, first, probe)
    assert not late.recorded, "a worker that lost its lease must not record"
    assert record_result(services.db, clock, second, probe).job_finished
    view = job_view(services.db, team_id, job.job_id)
    assert (view.processed, view.succeeded) == (1, 1)


def row_states(services, job_id):
    with services.db.transaction() as session:
        return {r.id: (r.state, r.lease_expires_at is not None, r.wait_until is not None)
                for r in session.scalars(select(ConnectJobRow)
                                         .where(ConnectJobRow.job_id == job_id))}


def test_sweeper_revives_expired_leases_and_due_waits_with_a_few_runners(services, team_id):
    clock = FakeClock()
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(30)])
    row_ids = start_job(services.db, clock, job.job_id)
    claims = [claim_row(services.db, clock, 60, row_id) for row_id in row_ids[:25]]
    assert set_aside(services.db, clock, claims[0], 120), "a busy host: waiting 120 s"
    actions = sweep(services.db, clock, stall_seconds=300, concurrency=100)
    assert (actions.rows_revived, actions.runners) == (0, {})

    clock.advance(61)  # 24 workers died mid-test
    actions = sweep(services.db, clock, stall_seconds=300, concurrency=100)
    assert actions.rows_revived == 24
    assert actions.runners == {job.job_id: 10}, "a few runners, never one message per row"
    states = row_states(services, job.job_id)
    assert states[row_ids[0]] == (RowState.WAITING, False, True), "a wait is not a lease"
    assert states[row_ids[1]] == (RowState.PENDING, False, False)

    clock.advance(60)
    actions = sweep(services.db, clock, stall_seconds=300, concurrency=100)
    assert (actions.rows_revived, actions.runners) == (1, {job.job_id: 1})
    assert row_states(services, job.job_id)[row_ids[0]] == (RowState.PENDING, False, False)


def test_sweeper_gives_a_stalled_job_runners_once_per_stall_period(services, team_id):
    clock = FakeClock()
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(300)])
    start_job(services.db, clock, job.job_id)
    clock.advance(301)
    actions = sweep(services.db, clock, stall_seconds=300, concurrency=20)
    assert actions.runners == {job.job_id: 30}, "as many as a start: 300 rows / 10"
    assert sweep(services.db, clock, stall_seconds=300, concurrency=20).runners == {}

    rows = processor(services, FakeProber(), clock)
    while rows.process_next(job.job_id):
        pass
    clock.advance(301)
    actions = sweep(services.db, clock, stall_seconds=300, concurrency=20)
    assert (actions.runners, actions.jobs_to_finish) == ({}, [job.job_id])


def test_sweeper_starts_forgotten_queued_jobs(services, team_id):
    clock = FakeClock()
    services.clock = clock
    job = submit(services, team_id, [bulk_row()])
    clock.advance(301)
    assert sweep(services.db, clock, stall_seconds=300,
                 concurrency=100).jobs_to_start == [job.job_id]


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
    assert row_states(services, job.job_id)[row_id] == (RowState.WAITING, False, True)
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


def redis_gate(**options) -> RedisHostGate:
    return RedisHostGate(fakeredis.FakeRedis(), **{
        "max_per_host": 1, "host_limits": {}, "lease_seconds": 30, **options})


def row(services, row_id) -> ConnectJobRow:
    with services.db.transaction() as session:
        found = session.get(ConnectJobRow, row_id)
        session.expunge(found)
        return found


class HookedProber(FakeProber):
    """Runs `hooks[n]` during its n-th probe, while the runner holds that row's host slots."""

    def __init__(self, hooks) -> None:
        super().__init__()
        self.hooks = hooks

    def probe_sync(self, smtp, imap):
        hook = self.hooks.get(len(self.calls))
        result = super().probe_sync(smtp, imap)
        if hook:
            hook()
        return result


def test_a_busy_host_row_waits_on_the_hosts_list_and_a_release_starts_it(services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(3)])
    first, second, third = start_job(services.db, services.clock, job.job_id)
    gate = redis_gate()
    holder = gate.acquire(["smtp.example.com"]).lease  # a single-account test holds the slot
    prober, queue = FakeProber(), RecordingQueue()
    rows = processor(services, prober, gate=gate)

    rows.run(queue, job_id=job.job_id)
    waiting = row(services, first)
    assert (waiting.state, waiting.attempts, waiting.claims) == (RowState.WAITING, 0, 1)
    assert waiting.lease_expires_at is None and waiting.wait_until is not None
    assert gate.waiting("smtp.example.com") == [first]
    assert prober.calls == [] and queue.published == [], (
        "a runner that only set a row aside stops, and publishes nothing")
    assert row(services, second).state == RowState.PENDING, "the job is not claimed and parked"

    woken = gate.release(holder)
    assert woken == [first]
    rows.run(queue, row_id=first)  # its probe_row message: then on as a runner of the job
    assert [row(services, r).state for r in (first, second, third)] == [RowState.DONE] * 3
    assert [(row(services, r).attempts, row(services, r).claims)
            for r in (first, second, third)] == [(1, 2), (1, 1), (1, 1)]
    assert queue.published == [("finish_job", job.job_id)]
    assert gate.in_use("smtp.example.com") == 0 and gate.waiting("smtp.example.com") == []


def test_a_runner_starts_the_rows_its_release_woke_before_its_next_row(services, team_id):
    job = submit(services, team_id, [bulk_row("a1@example.com"), bulk_row("a2@example.com")])
    other = submit(services, team_id, [bulk_row("b1@example.com")])
    start_job(services.db, services.clock, job.job_id)
    (b1,) = start_job(services.db, services.clock, other.job_id)
    gate, queue = redis_gate(), RecordingQueue()
    # While a1 is being tested, the other job's runner finds the host busy.
    prober = HookedProber({0: lambda: processor(services, FakeProber(), gate=gate)
                           .run(queue, job_id=other.job_id)})
    processor(services, prober, gate=gate).run(queue, job_id=job.job_id)
    assert [smtp.username for smtp, _ in prober.calls] == ["a1@example.com", "b1@example.com"]
    assert row(services, b1).claims == 2
    assert queue.published == [("run_rows", job.job_id, 1), ("finish_job", other.job_id)], (
        "it went on as the woken row's runner, and its own job got a successor")
    processor(services, prober, gate=gate).run(queue, job_id=job.job_id)
    assert prober.calls[-1][0].username == "a2@example.com"


def test_a_woken_row_that_was_cancelled_passes_its_slot_on(services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(3)])
    _, second, third = start_job(services.db, services.clock, job.job_id)
    gate, queue = redis_gate(), RecordingQueue()

    def park_two_and_cancel_one():
        for _ in range(2):
            processor(services, FakeProber(), gate=gate).run(queue, job_id=job.job_id)
        assert gate.waiting("imap.example.com") == [second, third], "the first full host"
        with services.db.transaction() as session:
            session.execute(update(ConnectJobRow).where(ConnectJobRow.id == second)
                            .values(state=RowState.CANCELLED))

    prober = HookedProber({0: park_two_and_cancel_one})
    processor(services, prober, gate=gate).run(queue, job_id=job.job_id)
    assert [smtp.username for smtp, _ in prober.calls] == ["u0@example.com", "u2@example.com"]
    assert row(services, second).state == RowState.CANCELLED, "never claimed"
    assert row(services, third).state == RowState.DONE


def test_register_then_recheck_takes_the_row_back_when_a_slot_freed(services, team_id):
    class FreedMeanwhile(OpenGate):
        def __init__(self):
            self.asked = []

        def acquire(self, hosts, waiter=None):
            self.asked.append(waiter)
            if waiter is None:
                return GateDecision(None, 1.0, busy=True)
            return GateDecision(HostLease(tuple(hosts), "t"))

    job = submit(services, team_id, [bulk_row()])
    (row_id,) = start_job(services.db, services.clock, job.job_id)
    gate = FreedMeanwhile()
    outcome = processor(services, FakeProber(), gate=gate).process(row_id)
    assert outcome.recorded and gate.asked == [None, row_id]
    done = row(services, row_id)
    assert (done.state, done.attempts, done.claims) == (RowState.DONE, 1, 1)


def test_a_runner_out_of_budget_announces_one_successor_or_hands_on_its_woken_row(
        services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(3)])
    start_job(services.db, services.clock, job.job_id)
    queue = RecordingQueue()
    processor(services, FakeProber()).run(queue, job_id=job.job_id, budget=2)
    assert queue.published == [("run_rows", job.job_id, 1)]

    other = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com")])
    _, b = start_job(services.db, services.clock, other.job_id)
    gate, queue = redis_gate(), RecordingQueue()
    prober = HookedProber({0: lambda: processor(services, FakeProber(), gate=gate)
                           .run(queue, job_id=other.job_id)})
    processor(services, prober, gate=gate).run(queue, job_id=other.job_id, budget=1)
    assert queue.published == [("probe_row", b)], "its woken row, instead of a successor"
    assert row(services, b).state == RowState.WAITING


def test_connect_spacing_is_a_timed_wait_with_a_message(services, team_id):
    job = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com")])
    a, b = start_job(services.db, services.clock, job.job_id)
    gate, queue = redis_gate(max_per_host=5, min_interval_ms=60_000), RecordingQueue()
    processor(services, FakeProber(), gate=gate).run(queue, job_id=job.job_id)
    assert queue.published == [("probe_row_later", b)]
    assert (row(services, a).state, row(services, b).state) == (RowState.DONE, RowState.WAITING)
    assert row(services, b).attempts == 0 and gate.waiting("imap.example.com") == []


def error_counts(services, job_id) -> dict[str, int]:
    with services.db.transaction() as session:
        return dict(session.execute(select(JobErrorCount.code, JobErrorCount.count)
                                    .where(JobErrorCount.job_id == job_id)).all())


def test_failed_rows_are_counted_by_error_code_with_their_result(services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com", smtpHost="bad.example.com")
                                     for i in range(2)] + [bulk_row("ok@example.com")])
    run_all(services, job.job_id, FakeProber())
    assert error_counts(services, job.job_id) == {"auth_failed": 2}


class FakeMx:
    def __init__(self, answers) -> None:
        self.answers, self.calls = answers, []

    def mx_hosts(self, domain):
        self.calls.append(domain)
        return self.answers.get(domain, [])


def hostless(email):
    return bulk_row(email, **dict.fromkeys(("emailServiceProvider", "smtpHost", "smtpPort",
                                            "smtpEncryption", "imapHost", "imapPort",
                                            "imapEncryption")))


def test_the_provider_is_detected_by_the_worker_not_at_intake(services, team_id):
    job = submit(services, team_id, [hostless("a@acme.io"), hostless("b@acme.io"),
                                     hostless("c@unknown.example")])
    assert (job.total, job.invalid) == (3, 0), "intake looked nothing up"
    row_ids = start_job(services.db, services.clock, job.job_id)
    assert row(services, row_ids[0]).settings["detectProvider"] is True

    mx = FakeMx({"acme.io": ["aspmx.l.google.com"]})
    resolvers = {}
    prober = FakeProber()
    rows = replace(processor(services, prober),
                   mx_for_job=lambda job_id: resolvers.setdefault(job_id, mx))
    outcomes = [rows.process(row_id) for row_id in row_ids]
    assert [o.recorded for o in outcomes] == [True, True, True] and outcomes[2].job_finished
    assert mx.calls.count("acme.io") == 2 and set(resolvers) == {job.job_id}
    assert [smtp.host for smtp, _ in prober.calls] == ["smtp.gmail.com", "smtp.gmail.com"]

    invalid = row(services, row_ids[2])
    assert (invalid.state, invalid.error_code) == (RowState.INVALID, "invalid_fields")
    assert invalid.field_errors[0]["field"] == "smtpHost"
    assert "unknown.example" in invalid.field_errors[0]["message"]
    assert invalid.credentials is None
    view = job_view(services.db, team_id, job.job_id)
    assert (view.processed, view.succeeded, view.invalid) == (3, 2, 1)
    assert error_counts(services, job.job_id) == {"invalid_fields": 1}

    report = _report(services, team_id, job.job_id)
    assert report[0]["filledIn"] == ("emailServiceProvider, smtpHost, smtpPort, smtpEncryption, "
                                     "imapHost, imapPort, imapEncryption")
    assert (report[2]["status"], report[2]["errorCode"]) == ("invalid", "invalid_fields")
    with services.db.transaction() as session:
        assert session.scalar(select(EmailAccount.provider)
                              .where(EmailAccount.email == "a@acme.io")) == "gsuite"


def retest_job(services, team_id, account_ids):
    """A reconnect job whose rows carry only their account id (settings and credentials are
    read from the account when the row is tested)."""
    job = submit_reconnect(services.db, services.clock, team_id, account_ids)
    with services.db.transaction() as session:
        for row_no, account_id in enumerate(account_ids, start=1):
            session.execute(update(ConnectJobRow)
                            .where(ConnectJobRow.job_id == job.job_id,
                                   ConnectJobRow.row_no == row_no)
                            .values(settings=None, credentials=None, account_id=account_id))
    return job, start_job(services.db, services.clock, job.job_id)


def stored_account(services, team_id, email, host="smtp.example.com") -> int:
    job = submit(services, team_id, [bulk_row(email, smtpHost=host)])
    run_all(services, job.job_id, FakeProber())
    with services.db.transaction() as session:
        return session.scalar(select(EmailAccount.id).where(EmailAccount.email == email))


def account(services, account_id) -> EmailAccount | None:
    with services.db.transaction() as session:
        found = session.get(EmailAccount, account_id)
        if found is not None:
            session.expunge(found)
        return found


def test_a_retest_row_tests_the_account_as_it_is_now(services, team_id):
    account_id = stored_account(services, team_id, "a@example.com")
    job, (row_id,) = retest_job(services, team_id, [account_id])
    with services.db.transaction() as session:  # changed after the job was queued
        session.execute(update(EmailAccount).where(EmailAccount.id == account_id)
                        .values(smtp_host="bad.example.com",
                                settings_version=EmailAccount.settings_version + 1))
    prober = FakeProber()
    assert processor(services, prober).process(row_id).recorded
    assert prober.calls[0][0].host == "bad.example.com"
    assert account(services, account_id).smtp_error_code == "auth_failed"
    done = row(services, row_id)
    assert (done.account_id, done.smtp_error_code) == (account_id, "auth_failed")
    assert error_counts(services, job.job_id) == {"auth_failed": 1}


def test_a_retest_row_of_a_deleted_account_reports_account_deleted(services, team_id):
    account_id = stored_account(services, team_id, "a@example.com")
    job, (row_id,) = retest_job(services, team_id, [account_id])
    with services.db.transaction() as session:
        session.execute(delete(EmailAccount).where(EmailAccount.id == account_id))
    prober = FakeProber()
    outcome = processor(services, prober).process(row_id)
    assert outcome.recorded and outcome.job_finished and prober.calls == []
    assert account(services, account_id) is None, "stays deleted"
    done = row(services, row_id)
    assert (done.state, done.error_code, done.account_status) == (
        RowState.DONE, "account_deleted", 0)
    view = job_view(services.db, team_id, job.job_id)
    assert (view.processed, view.failed) == (1, 1)
    assert error_counts(services, job.job_id) == {"account_deleted": 1}
    report = _report(services, team_id, job.job_id)
    assert (report[0]["status"], report[0]["errorCode"]) == ("failed", "account_deleted")


def test_a_retest_does_not_write_over_an_account_changed_or_deleted_during_its_probe(
        services, team_id):
    changed = stored_account(services, team_id, "a@example.com", host="bad.example.com")
    deleted = stored_account(services, team_id, "b@example.com")
    job, (changed_row, deleted_row) = retest_job(services, team_id, [changed, deleted])

    def patch():  # a PATCH of the password while the probe runs
        with services.db.transaction() as session:
            session.execute(update(EmailAccount).where(EmailAccount.id == changed)
                            .values(credentials="new-token", status=7,
                                    settings_version=EmailAccount.settings_version + 1))

    def remove():
        with services.db.transaction() as session:
            session.execute(delete(EmailAccount).where(EmailAccount.id == deleted))

    rows = processor(services, HookedProber({0: patch, 1: remove}))
    assert rows.process(changed_row).recorded and rows.process(deleted_row).recorded
    kept = account(services, changed)
    assert (kept.credentials, kept.status) == ("new-token", 7), "the PATCH is not reverted"
    assert row(services, changed_row).smtp_error_code == "auth_failed", "the row keeps its own"
    assert account(services, deleted) is None
    assert row(services, deleted_row).error_code == "account_deleted"
    assert error_counts(services, job.job_id) == {"auth_failed": 1, "account_deleted": 1}


def test_after_a_busy_host_a_runner_takes_only_rows_of_other_hosts(services, team_id):
    elsewhere = {"smtpHost": "smtp.other.example", "imapHost": "imap.other.example"}
    job = submit(services, team_id, [
        bulk_row("a@example.com"), bulk_row("b@example.com"),
        bulk_row("c@example.com", **elsewhere), bulk_row("d@example.com", **elsewhere)])
    first, second, third, fourth = start_job(services.db, services.clock, job.job_id)
    gate, queue, prober = redis_gate(), RecordingQueue(), FakeProber()
    gate.acquire(["smtp.example.com"])  # held elsewhere
    processor(services, prober, gate=gate).run(queue, job_id=job.job_id)
    assert [smtp.host for smtp, _ in prober.calls] == ["smtp.other.example"] * 2
    assert [(row(services, r).state, row(services, r).claims)
            for r in (first, second, third, fourth)] == [
        (RowState.WAITING, 1), (RowState.PENDING, 0), (RowState.DONE, 1), (RowState.DONE, 1)]
    assert queue.published == [], "its job's only other row waits for the same host"


def test_a_runner_claims_its_next_row_in_the_transaction_of_the_last_result(
        services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(4)])
    row_ids = start_job(services.db, services.clock, job.job_id)
    commits = []

    def committed(connection) -> None:
        commits.append(connection)

    event.listen(services.db.engine, "commit", committed)
    try:
        processor(services, FakeProber()).run(RecordingQueue(), job_id=job.job_id, budget=3)
    finally:
        event.remove(services.db.engine, "commit", committed)
    assert len(commits) == 4, "a claim, then a result per row, the first two claiming ahead"
    assert [(row(services, r).state, row(services, r).attempts) for r in row_ids] == [
        (RowState.DONE, 1)] * 3 + [(RowState.PENDING, 0)], "nothing claimed on the last turn"


def test_a_row_claimed_ahead_is_given_back_when_the_worker_stops(services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(3)])
    first, second, third = start_job(services.db, services.clock, job.job_id)
    queue, stops = RecordingQueue(), iter([False, True])
    processor(services, FakeProber()).run(queue, job_id=job.job_id, stopping=lambda: next(stops))
    assert queue.published == [("run_rows", job.job_id, 1)]
    taken_ahead = row(services, second)
    assert (taken_ahead.state, taken_ahead.attempts, taken_ahead.claims,
            taken_ahead.lease_expires_at) == (RowState.PENDING, 0, 1, None)
    processor(services, FakeProber()).run(queue, job_id=job.job_id)
    assert [row(services, r).state for r in (first, second, third)] == [RowState.DONE] * 3


def test_rows_woken_by_a_release_go_before_a_claim_ahead(services, team_id):
    job = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com"),
                                     bulk_row("c@example.com", smtpHost="smtp.other.example",
                                              imapHost="imap.other.example")])
    a, b, c = start_job(services.db, services.clock, job.job_id)
    gate, queue = redis_gate(), RecordingQueue()
    # While `a` holds its hosts, a second runner finds them busy and puts `b` on their list.
    prober = HookedProber({0: lambda: processor(services, FakeProber(), gate=gate)
                           .run(RecordingQueue(), job_id=job.job_id, budget=1)})
    processor(services, prober, gate=gate).run(queue, job_id=job.job_id, budget=2)
    assert [smtp.host for smtp, _ in prober.calls] == ["smtp.example.com"] * 2, \
        "b, woken by a's release, before the job's next pending row"
    assert [row(services, r).state for r in (a, b, c)] == [
        RowState.DONE, RowState.DONE, RowState.PENDING]


def test_a_runner_of_a_worker_shutting_down_hands_its_work_on(services, team_id):
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(3)])
    row_ids = start_job(services.db, services.clock, job.job_id)
    queue, stops = RecordingQueue(), iter([False, True])
    processor(services, FakeProber()).run(queue, job_id=job.job_id,
                                          stopping=lambda: next(stops))
    assert queue.published == [("run_rows", job.job_id, 1)], "a successor takes the rest"
    assert [row(services, r).state for r in row_ids] == [
        RowState.DONE, RowState.PENDING, RowState.PENDING], "one row tested, two left"

    queue = RecordingQueue()
    processor(services, FakeProber()).run(queue, row_id=123456, stopping=lambda: True)
    assert queue.published == [("probe_row", 123456)], "a woken row is handed on untouched"
