import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from app.jobs.idempotency import (
    IdempotencyMismatch,
    RequestKey,
    check_key,
    delete_expired_keys,
    replayed_job,
    request_hash,
)
from app.jobs.intake import JobOptions, submit_job
from app.models import ConnectJob, IdempotencyKey
from app.teams import create_api_key
from tests.app.jobs.doubles import FakeClock
from tests.factories import bulk_row


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


def submit(services, team_id, key: RequestKey, rows=None):
    return submit_job(services.db, services.cipher, services.clock, team_id,
                      rows or [bulk_row()], options=JobOptions(idempotency=key))


def jobs(services) -> int:
    with services.db.reading() as session:
        return session.scalar(select(func.count()).select_from(ConnectJob))


def test_hash_covers_method_path_type_and_body():
    base = request_hash("POST", "/v1/x", "application/json", b"[1]")
    assert base == request_hash("post", "/v1/x", "application/json", b"[1]")
    assert len({base, request_hash("PUT", "/v1/x", "application/json", b"[1]"),
                request_hash("POST", "/v1/y", "application/json", b"[1]"),
                request_hash("POST", "/v1/x", "text/csv", b"[1]"),
                request_hash("POST", "/v1/x", "application/json", b"[2]"),
                request_hash("POST", "/v1/xa", "pplication/json", b"[1]")}) == 6


def test_key_checks():
    assert check_key("k-1") == "k-1"
    for bad in ("", "   ", "k" * 256):
        with pytest.raises(ValueError):
            check_key(bad)


def test_one_key_under_concurrent_requests_makes_one_job(services, team_id):
    key = RequestKey("retry-me", "h" * 64)
    results = []
    go = threading.Barrier(4)

    def send():
        go.wait()
        results.append(submit(services, team_id, key))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.job_id for r in results}) == 1
    assert sum(not r.replayed for r in results) <= 1
    assert jobs(services) == 1


def test_the_same_key_with_another_request_is_refused(services, team_id):
    first = submit(services, team_id, RequestKey("k", "a" * 64))
    assert replayed_job(services.db, services.clock.now(), team_id,
                        RequestKey("k", "a" * 64)) == first.job_id
    with pytest.raises(IdempotencyMismatch):
        replayed_job(services.db, services.clock.now(), team_id, RequestKey("k", "b" * 64))
    with pytest.raises(IdempotencyMismatch):
        submit(services, team_id, RequestKey("k", "b" * 64))
    other = create_api_key(services.db, services.clock, "globex").team_id
    assert submit(services, other, RequestKey("k", "b" * 64)).job_id != first.job_id, (
        "keys are per team")


def test_keys_expire_after_a_day(services, team_id):
    clock = FakeClock()
    services.clock = clock
    first = submit(services, team_id, RequestKey("k", "a" * 64))
    clock.advance(dt.timedelta(hours=24, seconds=1).total_seconds())
    assert replayed_job(services.db, clock.now(), team_id, RequestKey("k", "b" * 64)) is None
    second = submit(services, team_id, RequestKey("k", "b" * 64))
    assert second.job_id != first.job_id and not second.replayed
    clock.advance(dt.timedelta(hours=25).total_seconds())
    submit(services, team_id, RequestKey("fresh", "c" * 64))
    assert delete_expired_keys(services.db, clock, batch=1) == 1
    with services.db.reading() as session:
        assert session.scalars(select(IdempotencyKey.key)).all() == ["fresh"]
