import threading
import time

from sqlalchemy import select, text

from app.db import Database
from app.migrate import upgrade
from app.models import Team


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
