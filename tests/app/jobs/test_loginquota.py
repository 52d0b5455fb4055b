"""The team login quota: the counter on real Redis, and a job's rows waiting for it."""

import datetime as dt
import threading
import time
from dataclasses import replace

import pytest
import redis
from sqlalchemy import select

from app.config import ConfigError, load_settings
from app.jobs.loginquota import RedisLoginQuota, team_key
from app.jobs.runner import start_job
from app.jobs.status import job_view, status_payload
from app.models import ConnectJobRow, RowState
from app.teams import create_api_key
from tests.app.jobs.doubles import FakeProber, RecordingQueue
from tests.app.jobs.test_runner import processor, submit
from tests.factories import bulk_row


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def quota(client, limit, window_seconds=3600.0) -> RedisLoginQuota:
    return RedisLoginQuota(client, limit=limit, window_seconds=window_seconds)


def test_logins_are_counted_per_team_up_to_the_limit(client, env):
    counter = quota(client, 5)
    assert [counter.take(1, 2).granted for _ in range(3)] == [True, True, False]
    assert counter.take(1, 1).granted, "one protocol: one login, which still fits"
    refused = counter.take(1, 1)
    assert not refused.granted and 3590 < refused.wait_seconds <= 3600
    assert client.zcard(team_key(1)) == 5, "refused logins are not counted"
    assert counter.take(2, 2).granted, "another team has its own quota"


def test_the_wait_is_until_enough_of_the_log_ages_out_or_a_batch_for_a_job(client, env):
    counter = quota(client, 20, window_seconds=100)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    # Twenty logins, one a second, the oldest 19 s ago.
    client.zadd(team_key(1), {f"old:{i}": now_ms - (19 - i) * 1000 for i in range(20)})
    single = counter.take(1, 2)
    assert not single.granted and 80 < single.wait_seconds <= 82, (
        "two logins need the two oldest gone: the second goes at 100 - 18 s")
    batch = counter.take(1, 2, batch=True)
    assert not batch.granted and 80 < batch.wait_seconds <= 82
    client.zadd(team_key(2), {f"old:{i}": now_ms - (19 - i) * 1000 for i in range(20)})
    counter = quota(client, 40, window_seconds=100)
    client.zadd(team_key(2), {f"new:{i}": now_ms for i in range(20)})
    one = counter.take(2, 1)
    assert not one.granted and 80 < one.wait_seconds <= 81
    four = counter.take(2, 1, batch=True)
    assert not four.granted and 83 < four.wait_seconds <= 84, (
        "a job resumes when a tenth of the quota (4) has aged out, not after one login")


def test_concurrent_takers_never_exceed_the_limit(client, env):
    granted = []
    lock = threading.Lock()

    def taker():
        own = quota(redis.Redis.from_url(env["REDIS_URL"]), 50)  # a process of its own
        for _ in range(10):
            if own.take(7, 1).granted:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=taker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 50 and client.zcard(team_key(7)) == 50


def test_logins_free_again_as_the_window_rolls(client, env):
    counter = quota(client, 2, window_seconds=0.5)
    assert counter.take(3, 2).granted
    refused = counter.take(3, 2)
    assert not refused.granted and refused.wait_seconds <= 0.5
    time.sleep(refused.wait_seconds + 0.05)
    assert counter.take(3, 2).granted


@pytest.mark.parametrize("value", ["0", "1", "-5"])
def test_the_quota_setting_refuses_values_that_could_never_test_an_account(value):
    with pytest.raises(ConfigError, match="TEAM_MAX_LOGINS_PER_HOUR"):
        load_settings(TEAM_MAX_LOGINS_PER_HOUR=value)
    assert load_settings().team_max_logins_per_hour == 5000
    assert load_settings(TEAM_MAX_LOGINS_PER_HOUR="2").team_max_logins_per_hour == 2


def states(services, job_id):
    with services.db.reading() as session:
        return session.execute(
            select(ConnectJobRow.id, ConnectJobRow.state, ConnectJobRow.wait_until,
                   ConnectJobRow.attempts)
            .where(ConnectJobRow.job_id == job_id).order_by(ConnectJobRow.row_no)).all()


def status(services, team_id, job_id):
    return status_payload(job_view(services.db, team_id, job_id), services.store,
                          services.clock, 60, 7)


def test_past_the_quota_rows_wait_for_it_and_then_complete(services, client):
    window = 3.0
    counter = quota(client, 4, window_seconds=window)
    acme = create_api_key(services.db, services.clock, "acme").team_id
    globex = create_api_key(services.db, services.clock, "globex").team_id
    job = submit(services, acme, [bulk_row(f"u{i}@example.com") for i in range(5)])
    start_job(services.db, services.clock, job.job_id)
    prober, queue = FakeProber(), RecordingQueue()
    rows = replace(processor(services, prober), quota=counter, resume_runners=3)

    rows.run(queue, job_id=job.job_id)
    logged_in_by = services.clock.now()  # the first two rows' logins were made by now
    found = states(services, job.job_id)
    assert [s for _, s, _, _ in found] == [RowState.DONE] * 2 + [RowState.WAITING] * 3
    waits = {w for _, s, w, _ in found if s == RowState.WAITING}
    assert len(waits) == 1 and None not in waits, "the job's pending rows wait with it"
    (until,) = waits
    assert 0 < (until - services.clock.now()).total_seconds() <= window
    assert [a for *_, a in found] == [1, 1, 0, 0, 0], "waiting for the quota is no attempt"
    third = found[2].id
    assert queue.published == [("probe_row_later", third)], (
        "a delayed message wakes it; the runner stops taking the job's rows, no successor")
    assert len(prober.calls) == 2

    payload = status(services, acme, job.job_id)
    assert payload["waiting"] == {"reason": "team_login_quota",
                                  "resumesAt": until.isoformat().replace("+00:00", "Z"),
                                  "rows": 3}
    assert (payload["status"], payload["failed"], payload["processed"]) == ("running", 0, 2)

    other = submit(services, globex, [bulk_row(f"g{i}@example.com") for i in range(2)])
    start_job(services.db, services.clock, other.job_id)
    rows.run(RecordingQueue(), job_id=other.job_id)
    assert [s for _, s, _, _ in states(services, other.job_id)] == [RowState.DONE] * 2, (
        "another team is unaffected")

    # The delayed message, once the window has rolled past the first two rows' logins (the
    # second row's may have been made a little after `until` minus the window: its first
    # record_result compiles the job path's statements).
    rolled = max(until, logged_in_by + dt.timedelta(seconds=window))
    time.sleep(max(0.0, (rolled - services.clock.now()).total_seconds()) + 0.05)
    queue = RecordingQueue()
    rows.run(queue, row_id=third)
    assert queue.published[0] == ("run_rows", job.job_id, 2), (
        "resumed: the parked rows are back, with runners")
    found = states(services, job.job_id)
    assert [s for _, s, _, _ in found] == [RowState.DONE] * 4 + [RowState.WAITING]
    assert queue.published[1:] == [("probe_row_later", found[4].id)], "the fifth waits again"
    assert status(services, acme, job.job_id)["waiting"]["rows"] == 1

    until = found[4].wait_until
    time.sleep(max(0.0, (until - services.clock.now()).total_seconds()) + 0.05)
    queue = RecordingQueue()
    rows.run(queue, row_id=found[4].id)
    assert queue.published == [("finish_job", job.job_id)]
    final = status(services, acme, job.job_id)
    assert (final["processed"], final["succeeded"], final["failed"]) == (5, 5, 0)
    assert final["waiting"] is None
    assert [a for *_, a in states(services, job.job_id)] == [1] * 5
