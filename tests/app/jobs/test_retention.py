import pytest
import requests
from sqlalchemy import select, update

from app.accounts.management import delete_account
from app.jobs.idempotency import RequestKey
from app.jobs.intake import JobOptions, submit_job
from app.jobs.retention import apply_retention
from app.jobs.status import status_payload
from app.models import (
    AccountDeletion,
    ConnectJob,
    ConnectJobRow,
    EmailAccount,
    IdempotencyKey,
    JobStatus,
)
from app.teams import create_api_key
from tests.app.jobs.doubles import FakeClock
from tests.app.jobs.helpers import finished_job, view
from tests.factories import bulk_row


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def test_old_jobs_lose_their_files_and_credentials_but_keep_accounts(services, team_id):
    clock = FakeClock()
    services.clock = clock
    old = finished_job(services, team_id, [bulk_row("a@example.com"),
                                           bulk_row("b@example.com", smtpHost="bad.x")])
    submit_job(services.db, services.cipher, clock, team_id, [bulk_row("c@example.com")],
               options=JobOptions(idempotency=RequestKey("k", "a" * 64)))
    with services.db.transaction() as session:  # a credential a crash left behind
        session.execute(update(ConnectJobRow).where(ConnectJobRow.job_id == old)
                        .values(credentials="mc1.leftover"))
    files = view(services, team_id, old)
    links = [services.store.download_url(key, 60)
             for key in (files.report_key, files.failed_rows_key)]
    assert all(requests.get(link, timeout=10).status_code == 200 for link in links)

    clock.advance(6 * 86400)
    early = apply_retention(services.db, clock, services.store, 7)
    assert (early.jobs_expired, early.keys_deleted) == (0, 1), "keys go after a day"
    clock.advance(1 * 86400 + 1)
    result = apply_retention(services.db, clock, services.store, 7, batch=1)
    assert (result.jobs_expired, result.keys_deleted) == (1, 0)
    assert all(requests.get(link, timeout=10).status_code == 404 for link in links)
    expired = view(services, team_id, old)
    assert expired.files_expired_at == clock.now()
    payload = status_payload(expired, services.store, clock, 60, 7)
    assert payload["reportURL"] is None and payload["failedRowsURL"] is None
    assert payload["reportExpired"] is True and "7 days" in payload["reportExpiredMessage"]
    with services.db.reading() as session:
        assert session.scalars(select(ConnectJobRow.credentials)
                               .where(ConnectJobRow.job_id == old)).all() == [None, None]
        assert len(session.scalars(select(EmailAccount)).all()) == 2
        assert session.scalars(select(IdempotencyKey)).all() == []
    again = apply_retention(services.db, clock, services.store, 7)
    assert (again.jobs_expired, again.keys_deleted) == (0, 0)


def test_a_missing_object_is_not_an_error(services):
    services.store.delete("reports/never/was.csv")


def test_a_deletion_is_remembered_while_an_older_job_may_still_finish(services, team_id):
    clock = FakeClock()
    services.clock = clock
    finished_job(services, team_id, [bulk_row("a@example.com")])
    account_id = stored_id(services)
    waiting = submit_job(services.db, services.cipher, clock, team_id,
                         [bulk_row("a@example.com")])
    clock.advance(60)
    assert delete_account(services.db, clock, team_id, account_id)

    clock.advance(2 * 3600)
    assert apply_retention(services.db, clock, services.store, 7).deletions_forgotten == 0, (
        "a job submitted before the deletion has not finished")
    with services.db.transaction() as session:
        session.execute(update(ConnectJob).where(ConnectJob.id == waiting.job_id)
                        .values(status=JobStatus.COMPLETED))
    assert apply_retention(services.db, clock, services.store, 7).deletions_forgotten == 1
    with services.db.reading() as session:
        assert session.scalars(select(AccountDeletion)).all() == []


def test_a_recent_deletion_is_remembered_for_a_single_connect(services, team_id):
    clock = FakeClock()
    services.clock = clock
    finished_job(services, team_id, [bulk_row("a@example.com")])
    assert delete_account(services.db, clock, team_id, stored_id(services))
    clock.advance(3599)
    assert apply_retention(services.db, clock, services.store, 7).deletions_forgotten == 0
    clock.advance(2)
    assert apply_retention(services.db, clock, services.store, 7).deletions_forgotten == 1


def stored_id(services) -> int:
    with services.db.reading() as session:
        return session.scalars(select(EmailAccount.id)).one()
