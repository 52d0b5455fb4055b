from sqlalchemy import delete

from app.clock import SystemClock
from app.db import Database
from app.models import ApiKey
from app.teams import KeyCache, create_api_key


def test_key_cache_serves_a_known_key_without_the_database_until_it_expires(database_url):
    db = Database(database_url)
    issued = create_api_key(db, SystemClock(), "acme")
    now = [1000.0]
    cache = KeyCache(db, ttl_seconds=60, monotonic=lambda: now[0])
    assert cache.team_for_key(issued.key) == issued.team_id
    with db.transaction() as session:
        session.execute(delete(ApiKey))
    now[0] += 59
    assert cache.team_for_key(issued.key) == issued.team_id  # from the cache
    now[0] += 2
    assert cache.team_for_key(issued.key) is None  # expired: read again, and it is gone


def test_key_cache_never_remembers_an_unknown_key(database_url):
    db = Database(database_url)
    cache = KeyCache(db)
    assert cache.team_for_key("mc_not_yet") is None
    issued = create_api_key(db, SystemClock(), "acme")
    assert cache.team_for_key(issued.key) == issued.team_id
    assert cache.team_for_key("mc_not_yet") is None
