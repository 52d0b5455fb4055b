"""Engine and session factory, the same path for web requests and workers."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

READ_ONLY = "mailconnect_read_only"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in Python, whatever the database keeps (SQLite keeps none)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def make_engine(url: str) -> Engine:
    # hide_parameters: an error's text (and so a logged traceback) never carries row values.
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": 60, "check_same_thread": False},
            pool_size=20,
            max_overflow=20,
        )
        _serialise_sqlite_writers(engine)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, hide_parameters=True)
    _ping_idle_connections(engine)
    return engine


# A pooled connection unused for this long is pinged before it is handed out (one that was
# in use a moment ago is not: pool_pre_ping's round trip on every checkout was a third of a
# status poll's database time). A connection the server dropped within this window fails its
# statement instead, which invalidates the whole pool, as a failure mid-transaction would.
PING_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is not None and time.monotonic() - checked_in < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out a fresh one.
            raise DisconnectionError(str(exc)) from exc


_CHECKED_IN = "mailconnect_checked_in_at"


def _serialise_sqlite_writers(engine: Engine) -> None:
    # pysqlite's deferred BEGIN lets two readers both try to upgrade to writers, and the loser
    # gets SQLITE_BUSY without waiting. BEGIN IMMEDIATE takes the write lock up front, so the
    # busy timeout applies and concurrent workers queue instead of failing.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # WAL readers never wait for writers
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)
        # A single statement needs no BEGIN and COMMIT around it: on PostgreSQL those are two
        # more round trips per status poll.
        self._statement_reader = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql" else self._read_engine)
        # SQLite has one writer at a time. Threads of one process queue here, in order,
        # instead of in SQLite's busy handler, which sleeps up to 100 ms between tries.
        self._write_lock = (threading.Lock() if self.engine.dialect.name == "sqlite"
                            else contextlib.nullcontext())

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One short unit of work that may write: commits on success, rolls back on error."""
        with self._write_lock, self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A unit of work that only reads; on SQLite it does not take the write lock."""
        with self._readers.begin() as session:
            yield session

    @contextmanager
    def core_transaction(self) -> Iterator[Connection]:
        """transaction() without the ORM Session, for the per-row path where its cost adds up."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def core_reading(self) -> Iterator[Connection]:
        """reading() without the ORM Session, for one statement: on PostgreSQL it runs in
        autocommit, so do not rely on several statements seeing one snapshot."""
        with self._statement_reader.begin() as connection:
            yield connection

    def dispose(self) -> None:
        """Drop pooled connections, e.g. in a freshly forked worker process."""
        self.engine.dispose(close=False)


def delete_in_batches(db: Database, table: Table, condition: ColumnElement[bool],
                      batch: int = 1000) -> int:
    """Delete the rows of `table` (integer `id`) that meet `condition`, a short transaction per
    batch so that a large purge never holds a long write lock; returns how many went."""
    ids_column: Column = table.c.id
    removed = 0
    while True:
        with db.transaction() as session:
            ids = list(session.scalars(select(ids_column).where(condition)
                                       .order_by(ids_column).limit(batch)))
            if ids:
                session.execute(delete(table).where(ids_column.in_(ids)))
        removed += len(ids)
        if len(ids) < batch:
            return removed
