import threading
import time

import pytest
from sqlalchemy import select, text

from app import db as app_db
from app.db import Database
from app.migrate import upgrade
from app.models import Team
from tests.conftest import TEST_DATABASE_URL


def test_sqlite_readers_do_not_wait_for_a_writer(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    db = Database(url)
    writing, done = threading.Event(), threading.Event()

    def long_writer() -> None:
        with db.transaction() as session:
            session.execute(text("INSERT INTO teams (name, created_at) VALUES ('a', '2026-01-01')"))
            writing.set()
            done.wait(5)

    thread = threading.Thread(target=long_writer)
    thread.start()
    writing.wait(5)
    started = time.monotonic()
    with db.reading() as session:
        assert session.scalars(select(Team.name)).all() == []  # not yet committed
    assert time.monotonic() - started < 1
    done.set()
    thread.join()
    with db.reading() as session:
        assert session.scalars(select(Team.name)).all() == ["a"]


def test_sqlite_writers_in_one_process_take_turns(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    db = Database(url)

    def add(i: int) -> None:
        with db.transaction() as session:
            session.execute(text("INSERT INTO teams (name, created_at) VALUES (:n, '2026-01-01')"),
                            {"n": f"t{i}"})

    threads = [threading.Thread(target=add, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.reading() as session:
        assert len(session.scalars(select(Team.name)).all()) == 50


POSTGRES = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's pool pings")


def counted_pings(monkeypatch, db: Database) -> list[object]:
    pings: list[object] = []
    ping = db.engine.dialect.do_ping

    def counting(dbapi_connection) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting)
    return pings


@POSTGRES
def test_a_connection_in_use_a_moment_ago_is_not_pinged(monkeypatch, database_url):
    db = Database(database_url)
    pings = counted_pings(monkeypatch, db)
    for _ in range(5):
        with db.core_reading() as connection:
            connection.execute(text("SELECT 1"))
    assert len(pings) == 1  # the new connection only
    db.engine.dispose()


@POSTGRES
def test_an_idle_connection_the_server_dropped_is_replaced_unseen(monkeypatch, database_url):
    db = Database(database_url)
    with db.core_reading() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    other = Database(database_url)
    with other.core_transaction() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.engine.dispose()
    monkeypatch.setattr(app_db, "PING_IDLE_SECONDS", 0.0)  # it has been idle long enough
    pings = counted_pings(monkeypatch, db)
    with db.core_reading() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    assert len(pings) >= 2  # the dropped connection's ping failed, the fresh one's passed
    db.engine.dispose()
