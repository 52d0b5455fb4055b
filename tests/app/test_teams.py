import datetime as dt
import time

import pytest
from sqlalchemy import delete, event, insert

from app.clock import SystemClock
from app.db import Database
from app.models import ApiKey
from app.teams import (
    AmbiguousKeyPrefix,
    KeyCache,
    KeyNotFound,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    team_for_key,
)


class FakeClock:
    def __init__(self) -> None:
        self.at = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self.at


class Monotonic:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


def statements(db: Database, verb: str, table: str = "api_keys") -> list[str]:
    """Every statement of `verb` on `table` the engine sends from now on."""
    seen: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(verb) and table in statement:
            seen.append(statement)

    return seen


def test_key_cache_reads_a_key_once_per_second_however_often_it_is_used(database_url):
    db = Database(database_url)
    issued = create_api_key(db, SystemClock(), "acme")
    now = Monotonic()
    cache = KeyCache(db, monotonic=now, stamp_in_background=False)
    selects = statements(db, "SELECT")
    for _ in range(200):
        assert cache.team_for_key(issued.key) == issued.team_id
        now.at += 0.004  # 200 requests in 0.8 s
    assert len(selects) == 1
    now.at += 0.2
    assert cache.team_for_key(issued.key) == issued.team_id
    assert len(selects) == 2


def test_key_cache_refuses_a_key_revoked_elsewhere_within_one_second(database_url):
    db = Database(database_url)
    issued = create_api_key(db, SystemClock(), "acme")
    now = Monotonic()
    cache = KeyCache(db, monotonic=now, stamp_in_background=False)
    assert cache.team_for_key(issued.key) == issued.team_id
    now.at += 0.5
    revoke_api_key(db, SystemClock(), issued.key)  # another process, say the CLI
    assert cache.team_for_key(issued.key) == issued.team_id  # trusted for up to a second
    now.at += 0.5
    assert cache.team_for_key(issued.key) is None  # one second after the last read
    now.at += 120
    assert cache.team_for_key(issued.key) is None  # and never again
    assert team_for_key(db, issued.key) is None


def test_key_cache_never_remembers_an_unknown_key(database_url):
    db = Database(database_url)
    cache = KeyCache(db, stamp_in_background=False)
    assert cache.team_for_key("mc_not_yet") is None
    issued = create_api_key(db, SystemClock(), "acme")
    assert cache.team_for_key(issued.key) == issued.team_id
    assert cache.team_for_key("mc_not_yet") is None


def test_last_used_is_written_once_a_minute_per_key_not_per_request(database_url):
    db = Database(database_url)
    issued = create_api_key(db, SystemClock(), "acme")
    other = create_api_key(db, SystemClock(), "acme")
    clock, now = FakeClock(), Monotonic()
    cache = KeyCache(db, clock=clock, monotonic=now, stamp_in_background=False)
    updates = statements(db, "UPDATE")
    first_use = clock.at
    for _ in range(590):  # ten requests a second for 59 s, each second re-checking the key
        assert cache.team_for_key(issued.key) == issued.team_id
        now.at += 0.1
        clock.at += dt.timedelta(seconds=0.1)
    assert len(updates) == 1
    assert [k.last_used_at for k in list_api_keys(db, issued.team_id)] == [first_use, None]
    now.at += 1.1
    clock.at += dt.timedelta(seconds=1.1)
    assert cache.team_for_key(issued.key) == issued.team_id
    assert cache.team_for_key(other.key) == other.team_id
    assert len(updates) == 3
    assert [k.last_used_at for k in list_api_keys(db, issued.team_id)] == [clock.at, clock.at]


def test_a_recent_stamp_by_another_process_is_not_written_again(database_url):
    db = Database(database_url)
    issued = create_api_key(db, SystemClock(), "acme")
    clock = FakeClock()
    first = KeyCache(db, clock=clock, stamp_in_background=False)
    second = KeyCache(db, clock=clock, stamp_in_background=False)
    first.team_for_key(issued.key)
    stamped = clock.at
    clock.at += dt.timedelta(seconds=10)
    second.team_for_key(issued.key)
    assert list_api_keys(db, issued.team_id)[0].last_used_at == stamped


def test_last_used_is_stamped_off_the_request_path_by_default(database_url):
    db = Database(database_url)
    issued = create_api_key(db, SystemClock(), "acme")
    cache = KeyCache(db)
    assert cache.team_for_key(issued.key) == issued.team_id
    for _ in range(500):
        if list_api_keys(db, issued.team_id)[0].last_used_at is not None:
            break
        time.sleep(0.01)  # the stamp's own thread, not a deadline: wait for it to land
    assert list_api_keys(db, issued.team_id)[0].last_used_at is not None


def test_revoke_by_whole_key_or_prefix_and_twice_is_harmless(database_url):
    db = Database(database_url)
    clock = FakeClock()
    first = create_api_key(db, clock, "acme")
    second = create_api_key(db, clock, "acme")
    done = revoke_api_key(db, clock, first.key)
    assert (done.prefix, done.team_name, done.already_revoked) == (first.key[:10], "acme", False)
    by_prefix = revoke_api_key(db, clock, second.key[:10])
    assert by_prefix.prefix == second.key[:10] and not by_prefix.already_revoked
    clock.at += dt.timedelta(hours=1)
    again = revoke_api_key(db, clock, first.key[:10])
    assert again.already_revoked and again.revoked_at == done.revoked_at
    assert team_for_key(db, first.key) is None and team_for_key(db, second.key) is None


def test_revoke_refuses_an_ambiguous_or_unknown_prefix(database_url):
    db = Database(database_url)
    clock = FakeClock()
    issued = create_api_key(db, clock, "acme")
    twin_prefix = issued.key[:10]
    with db.transaction() as session:  # another key sharing the prefix (42 random bits)
        session.execute(insert(ApiKey).values(team_id=issued.team_id, key_hash="0" * 64,
                                              prefix=twin_prefix, created_at=clock.now()))
    with pytest.raises(AmbiguousKeyPrefix) as ambiguous:
        revoke_api_key(db, clock, twin_prefix)
    assert ambiguous.value.matches == 2
    with pytest.raises(KeyNotFound):
        revoke_api_key(db, clock, "mc_nothing")
    with pytest.raises(KeyNotFound):  # a whole key nobody issued, though its prefix exists
        revoke_api_key(db, clock, twin_prefix + "x" * 33)
    assert team_for_key(db, issued.key) == issued.team_id  # nothing was revoked
    assert revoke_api_key(db, clock, issued.key).prefix == twin_prefix  # the whole key works


def test_list_shows_prefixes_oldest_first_never_keys(database_url):
    db = Database(database_url)
    clock = FakeClock()
    first = create_api_key(db, clock, "acme")
    clock.at += dt.timedelta(minutes=1)
    second = create_api_key(db, clock, "acme")
    create_api_key(db, clock, "other")
    revoke_api_key(db, clock, second.key)
    keys = list_api_keys(db, first.team_id)
    assert [k.prefix for k in keys] == [first.key[:10], second.key[:10]]
    assert [k.revoked_at for k in keys] == [None, clock.at]
    with db.transaction() as session:
        session.execute(delete(ApiKey))
    assert list_api_keys(db, first.team_id) == []
