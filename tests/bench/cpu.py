"""CPU time spent by the processes of a run, from psutil's cpu_times.

A process tree's CPU is read as each live process's own user + system time plus the time of
its children it has already reaped (cpu_times' children_user/children_system): a child that
exits during the run is then still counted, by its parent. PostgreSQL's backends are children
of the postmaster, so the same reading covers the whole database server; one database's
backends are sampled instead (a backend that exits keeps its last sample).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
from sqlalchemy import create_engine, text

from app.config import load_settings


def _own_and_reaped(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process, its live descendants and the children reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            total += _own_and_reaped(process)
        except psutil.NoSuchProcess:
            pass  # exited while being read: its parent counts it once reaped
    return total


def postgres_server(database_url: str) -> tuple[int, str]:
    """The postmaster's pid (the parent of this connection's backend) and the database name."""
    engine = create_engine(load_settings(DATABASE_URL=database_url).sqlalchemy_url)
    try:
        with engine.connect() as connection:
            backend = connection.execute(text("select pg_backend_pid()")).scalar_one()
            name = connection.execute(text("select current_database()")).scalar_one()
            # Read while connected: the backend exits once its connection closes.
            postmaster = psutil.Process(backend).ppid()
    finally:
        engine.dispose()
    return postmaster, name


@contextmanager
def database_backends_cpu(postmaster: int, database: str, interval: float = 0.2
                          ) -> Iterator[Callable[[], float]]:
    """CPU seconds used during the block by the backends serving `database` (their process
    title names it), sampled every `interval`; yields a function giving the total so far."""
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    stop = threading.Event()

    def sample(initial: bool = False) -> None:
        try:
            children = psutil.Process(postmaster).children()
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                title = " ".join(child.cmdline())
                if f" {database} " not in f" {title} ":
                    continue
                times = child.cpu_times()
            except psutil.Error:
                continue
            # A backend started during the run counts from zero, one alive before from now.
            first.setdefault(child.pid, times.user + times.system if initial else 0.0)
            last[child.pid] = times.user + times.system

    def loop() -> None:
        while not stop.wait(interval):
            sample()

    sample(initial=True)
    sampler = threading.Thread(target=loop, daemon=True)
    sampler.start()
    try:
        yield lambda: sum(last[pid] - first[pid] for pid in last)
    finally:
        stop.set()
        sampler.join()
        sample()
