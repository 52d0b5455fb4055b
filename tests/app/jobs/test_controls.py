import datetime as dt
import threading

import pytest
from sqlalchemy import select

from app.jobs.controls import (
    JobEnded,
    JobNotEnded,
    JobNotFound,
    NothingToRetry,
    cancel_job,
    list_jobs,
    retry_failed_rows,
)
from app.jobs.failed_rows import COLUMNS
from app.jobs.finish import fail_job, finish_job
from app.jobs.runner import claim_next_row, record_result, start_job
from app.models import ConnectJob, ConnectJobRow, JobErrorCount, RowState
from app.probe.model import AccountProbe
from app.teams import create_api_key
from tests.app.jobs.doubles import OK, FakeClock
from tests.app.jobs.helpers import download, finished_job, view
from tests.app.jobs.test_runner import submit
from tests.factories import bulk_row


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def job_rows(services, job_id):
    with services.db.reading() as session:
        return session.scalars(select(ConnectJobRow).where(ConnectJobRow.job_id == job_id)
                               .order_by(ConnectJobRow.row_no)).all()


def test_cancel_takes_untested_rows_lets_testing_rows_finish_and_ends_cancelled(
        services, team_id):
    rows = [bulk_row(f"u{i}@example.com") for i in range(4)] + [bulk_row("nope")]
    job = submit(services, team_id, rows)
    start_job(services.db, services.clock, job.job_id)
    testing = claim_next_row(services.db, services.clock, 60, job.job_id)

    cancelled = cancel_job(services.db, services.clock, team_id, job.job_id)
    assert (cancelled.rows, cancelled.job_finished) == (3, False)
    states = [(r.state, r.credentials is None) for r in job_rows(services, job.job_id)]
    assert states == [("testing", False), *[("cancelled", True)] * 3, ("invalid", True)]
    assert cancel_job(services.db, services.clock, team_id, job.job_id).rows == 0, (
        "cancelling twice while the job drains is harmless")
    current = view(services, team_id, job.job_id)
    assert (current.cancelled, current.processed, current.total) == (3, 4, 5)
    assert current.cancel_requested_at is not None and not current.is_completed
    assert claim_next_row(services.db, services.clock, 60, job.job_id) is None

    outcome = record_result(services.db, services.clock, testing,
                            AccountProbe(smtp=OK, imap=OK, duration_ms=1))
    assert outcome.job_finished
    assert finish_job(services.db, services.clock, services.store, job.job_id)
    ended = view(services, team_id, job.job_id)
    assert (ended.status, ended.is_completed, ended.succeeded) == ("cancelled", True, 1)
    _, report = download(services, ended.report_key)
    assert [r["status"] for r in report] == ["connected", *["cancelled"] * 3, "invalid"]

    with pytest.raises(JobEnded):
        cancel_job(services.db, services.clock, team_id, job.job_id)


def test_cancel_of_a_job_whose_rows_are_all_untested_is_ready_to_finish(services, team_id):
    job = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com")])
    assert cancel_job(services.db, services.clock, team_id, job.job_id).job_finished
    assert finish_job(services.db, services.clock, services.store, job.job_id)
    assert view(services, team_id, job.job_id).status == "cancelled"
    assert start_job(services.db, services.clock, job.job_id) == []


def test_cancel_of_another_teams_or_unknown_job_is_not_found(services, team_id):
    job = submit(services, team_id, [bulk_row()])
    other = create_api_key(services.db, services.clock, "globex").team_id
    for team, job_id in ((other, job.job_id), (team_id, "nope")):
        with pytest.raises(JobNotFound):
            cancel_job(services.db, services.clock, team, job_id)


def test_a_claim_and_the_cancel_never_both_win_a_row(services, team_id):
    rows = [bulk_row(f"u{i}@example.com") for i in range(60)]
    job = submit(services, team_id, rows)
    start_job(services.db, services.clock, job.job_id)
    claimed: list[int] = []
    outcome = []
    go = threading.Barrier(5)

    def runner():
        go.wait()
        while (claim := claim_next_row(services.db, services.clock, 60, job.job_id)):
            claimed.append(claim.row_id)

    def canceller():
        go.wait()
        outcome.append(cancel_job(services.db, services.clock, team_id, job.job_id))

    threads = [threading.Thread(target=runner) for _ in range(4)]
    threads.append(threading.Thread(target=canceller))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = {r.id: r.state for r in job_rows(services, job.job_id)}
    assert sorted(claimed) == sorted(i for i, s in states.items() if s == RowState.TESTING)
    assert len(claimed) == len(set(claimed))
    assert outcome[0].rows == sum(s == RowState.CANCELLED for s in states.values())
    assert len(claimed) + outcome[0].rows == 60
    assert view(services, team_id, job.job_id).processed == outcome[0].rows


def test_failed_job_is_completed_and_says_why(services, team_id):
    job = submit(services, team_id, [bulk_row("nope")])
    assert fail_job(services.db, services.clock, job.job_id, "the report could not be stored")
    failed = view(services, team_id, job.job_id)
    assert (failed.status, failed.is_completed) == ("failed", True)
    assert failed.error == "the report could not be stored"
    assert not fail_job(services.db, services.clock, job.job_id, "again")


def test_retry_makes_a_new_job_of_the_failed_rows_without_credentials(services, team_id):
    rows = [bulk_row("ok@example.com"), bulk_row("b1@example.com", smtpHost="bad.example.com"),
            bulk_row("nope"), bulk_row("b2@example.com", smtpHost="bad2.example.com")]
    job_id = finished_job(services, team_id, rows)
    source = job_rows(services, job_id)

    retry = retry_failed_rows(services.db, services.clock, team_id, job_id)
    assert (retry.total, retry.invalid, retry.needs_probing) == (2, 0, True)
    new_rows = job_rows(services, retry.job_id)
    assert [(r.row_no, r.email, r.account_id, r.state) for r in new_rows] == [
        (1, "b1@example.com", source[1].account_id, "pending"),
        (2, "b2@example.com", source[3].account_id, "pending")]
    assert all(r.settings is None and r.credentials is None for r in new_rows)
    new_job = view(services, team_id, retry.job_id)
    assert (new_job.kind, new_job.retry_of, new_job.status) == ("retry", job_id, "queued")

    picked = retry_failed_rows(services.db, services.clock, team_id, job_id, {"auth_failed"})
    assert picked.total == 2
    with pytest.raises(NothingToRetry):
        retry_failed_rows(services.db, services.clock, team_id, job_id, {"server_throttled"})


def test_retry_needs_an_ended_job_of_the_team_with_failed_rows(services, team_id):
    running = submit(services, team_id, [bulk_row(smtpHost="bad.example.com")])
    with pytest.raises(JobNotEnded):
        retry_failed_rows(services.db, services.clock, team_id, running.job_id)
    other = create_api_key(services.db, services.clock, "globex").team_id
    with pytest.raises(JobNotFound):
        retry_failed_rows(services.db, services.clock, other, running.job_id)
    clean = finished_job(services, team_id, [bulk_row()])
    with pytest.raises(NothingToRetry):
        retry_failed_rows(services.db, services.clock, team_id, clean)


def test_failed_rows_file_has_only_failed_and_invalid_rows_ready_to_fix(services, team_id):
    rows = [
        bulk_row("ok@example.com"),
        bulk_row("bad@example.com", smtpHost="bad.example.com", smtpPort=465, smtpEncryption=None,
                 tags=["a", "b"], warmupEnabled=True, fromFirstName="-Sam"),
        bulk_row("nope", fromFirstName="=HYPERLINK(\"http://evil\")", smtpPassword="leak-me",
                 imapPassword="leak-me-too", smtpPort=99999),
    ]
    job_id = finished_job(services, team_id, rows)
    finished = view(services, team_id, job_id)
    assert finished.failed_rows_key and job_id in finished.failed_rows_key
    assert finished.failed_rows_key != f"failed-rows/{team_id}/{job_id}.csv", "unguessable"
    text, failed = download(services, finished.failed_rows_key)
    assert list(failed[0]) == COLUMNS
    assert [r["smtpEmailAddress"] for r in failed] == ["bad@example.com", "nope"]
    bad, invalid = failed
    assert (bad["smtpHost"], bad["smtpPort"], bad["smtpEncryption"]) == (
        "bad.example.com", "465", "ssl")
    assert (bad["imapHost"], bad["imapPort"], bad["emailServiceProvider"]) == (
        "imap.example.com", "993", "zoho")
    assert (bad["tags"], bad["warmupEnabled"], bad["fromFirstName"]) == ("a, b", "true", "'-Sam")
    assert bad["errorCode"] == "auth_failed" and bad["error"].startswith("535")
    assert bad["hint"]
    assert bad["smtpPassword"] == bad["imapPassword"] == ""
    assert invalid["fromFirstName"] == "'=HYPERLINK(\"http://evil\")"
    assert invalid["smtpPort"] == "99999" and invalid["errorCode"] == "invalid_fields"
    assert "smtpPort" in invalid["error"]
    assert invalid["smtpPassword"] == invalid["imapPassword"] == ""
    assert "leak-me" not in text and "s3cret" not in text


def test_no_failed_rows_no_file(services, team_id):
    job_id = finished_job(services, team_id, [bulk_row()])
    assert view(services, team_id, job_id).failed_rows_key is None


def test_invalid_rows_keep_their_fields_but_never_a_password(services, team_id):
    job = submit(services, team_id, [bulk_row("nope", smtpPassword="pw1", imapPassword="pw2")])
    (row,) = job_rows(services, job.job_id)
    assert row.source["smtpEmailAddress"] == "nope"
    assert "smtpPassword" not in row.source and "imapPassword" not in row.source
    assert "pw1" not in repr(row.source)


def test_intake_counts_invalid_rows_by_error_code(services, team_id):
    job = submit(services, team_id, [bulk_row("nope"), bulk_row("x@example.com"),
                                     bulk_row("x@example.com"), bulk_row("bad")])
    with services.db.reading() as session:
        counts = dict(session.execute(select(JobErrorCount.code, JobErrorCount.count)
                                      .where(JobErrorCount.job_id == job.job_id)).all())
    assert counts == {"invalid_fields": 2, "duplicate_in_request": 1}
    assert view(services, team_id, job.job_id).errors_by_code == counts


def test_eta_is_the_remaining_rows_at_the_rate_so_far(services, team_id):
    clock = FakeClock()
    job = submit(services, team_id, [bulk_row(f"u{i}@example.com") for i in range(5)]
                 + [bulk_row("nope")])
    start_job(services.db, clock, job.job_id)
    assert view(services, team_id, job.job_id).eta_seconds(clock.now()) is None
    for _ in range(2):
        claim = claim_next_row(services.db, clock, 60, job.job_id)
        record_result(services.db, clock, claim, AccountProbe(smtp=OK, imap=OK, duration_ms=1))
    clock.advance(20)
    assert view(services, team_id, job.job_id).eta_seconds(clock.now()) == 30


def test_list_jobs_newest_first_paginated(services, team_id):
    clock = FakeClock()
    services.clock = clock
    ids = []
    for _ in range(3):
        ids.append(submit(services, team_id, [bulk_row()]).job_id)
        clock.advance(1)
    submit(services, create_api_key(services.db, clock, "globex").team_id, [bulk_row()])
    first = list_jobs(services.db, team_id, page=1, limit=2)
    second = list_jobs(services.db, team_id, page=2, limit=2)
    assert first.total == second.total == 3
    assert [v.job_id for v in first.jobs + second.jobs] == ids[::-1]
    with services.db.reading() as session:
        assert session.get(ConnectJob, ids[0]).created_at < dt.datetime.now(dt.UTC)
