"""What a poll reads: the job's row and its counts by error code, in one statement."""

from __future__ import annotations

import pytest
from sqlalchemy import event, update

from app.jobs.status import job_view
from app.models import JobErrorCount
from app.teams import create_api_key
from tests.app.jobs.test_runner import submit
from tests.factories import bulk_row


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def selects_during(services, action):
    """(action's result, the SELECT statements it sent)."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        return action(), sent
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)


def test_a_poll_is_one_statement_with_the_counts_by_code(services, team_id):
    job = submit(services, team_id, [bulk_row("nope"), bulk_row("x@example.com"),
                                     bulk_row("x@example.com"), bulk_row("bad")])
    view, sent = selects_during(services, lambda: job_view(services.db, team_id, job.job_id))
    assert len(sent) == 1
    assert view.errors_by_code == {"invalid_fields": 2, "duplicate_in_request": 1}
    assert (view.total, view.invalid) == (4, 3)


def test_a_job_without_errors_and_a_code_counted_down_to_zero(services, team_id):
    clean = submit(services, team_id, [bulk_row("a@example.com")])
    assert job_view(services.db, team_id, clean.job_id).errors_by_code == {}
    job = submit(services, team_id, [bulk_row("nope"), bulk_row("x@example.com"),
                                     bulk_row("x@example.com")])
    with services.db.transaction() as session:
        session.execute(update(JobErrorCount).where(JobErrorCount.job_id == job.job_id,
                                                    JobErrorCount.code == "invalid_fields")
                        .values(count=0))
    view = job_view(services.db, team_id, job.job_id)
    assert view.errors_by_code == {"duplicate_in_request": 1}
    assert view.job_id == job.job_id and view.total == 3


def test_another_teams_job_is_not_found(services, team_id):
    job = submit(services, team_id, [bulk_row("nope")])
    other = create_api_key(services.db, services.clock, "other").team_id
    assert job_view(services.db, other, job.job_id) is None
    assert job_view(services.db, team_id, "no-such-job") is None
