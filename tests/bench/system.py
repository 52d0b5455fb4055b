"""One job through mailconnect's own processes, as the Procfile starts them: gunicorn (POST
and status polls over HTTP), one or more Celery workers, the database. What it measures from
the POST to `completed`: wall time, CPU seconds of the worker, web and database processes,
the workers' peak RSS; and afterwards whether every counter is exact."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import func, select

from app.db import Database
from app.models import ConnectJobRow
from tests.bench.cpu import database_backends_cpu, postgres_server, tree_cpu_seconds
from tests.bench.environment import web_process
from tests.bench.memory import peak_rss
from tests.servers.worker import celery_process, wait_ready
from tests.workers.conftest import Api


def database_label(url: str) -> str:
    """`sqlite` or `postgresql`, as the benchmarks key their results."""
    return url.split(":")[0].split("+")[0]


def database_url(given: str, tmp: Path, name: str) -> str:
    """`sqlite` asks for a fresh SQLite file of this name; anything else is used as given."""
    return f"sqlite:///{tmp}/{name}.db" if given == "sqlite" else given


class HttpApi:
    """The public API over HTTP, with a key made through the in-process app."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.headers = {"x-api-key": key}
        self.http = requests.Session()

    def submit(self, rows: list[dict]) -> str:
        response = self.http.post(f"{self.base_url}/v1/email-accounts/connect", json=rows,
                                  headers=self.headers, timeout=300)
        assert response.status_code == 200, response.text[:2000]
        return response.json()["payload"]["requestId"]

    def status(self, request_id: str) -> dict:
        response = self.http.get(f"{self.base_url}/v1/email-accounts/connect/status/{request_id}",
                                 headers=self.headers, timeout=60)
        assert response.status_code == 200, response.text[:2000]
        return response.json()["payload"]

    wait = Api.wait  # the same loop, over this class's status()


@dataclass
class JobRun:
    rows: int
    seconds: float
    status: dict
    request_id: str
    cpu_s: dict[str, float]  # worker, web, database (this database's backends), db_server
    worker_peak_rss: int
    counts: dict[str, int] = field(default_factory=dict)

    def cpu_ms_per_row(self) -> dict[str, float]:
        return {name: round(seconds * 1000 / self.rows, 3) for name, seconds in self.cpu_s.items()}


@contextmanager
def _database_cpu(url: str) -> Iterator[dict[str, object]]:
    """For PostgreSQL, the CPU of this database's backends and of the whole server."""
    readings: dict[str, object] = {}
    if database_label(url) != "postgresql":
        yield readings
        return
    postmaster, name = postgres_server(url)
    server_before = tree_cpu_seconds(postmaster)
    with database_backends_cpu(postmaster, name) as backends:
        yield readings
    readings["database"] = backends()
    readings["db_server"] = tree_cpu_seconds(postmaster) - server_before


def run_job(tmp: Path, name: str, env: Mapping[str, str], rows: list[dict],
            worker_envs: Sequence[Mapping[str, str]] = ({},), timeout: float = 7200) -> JobRun:
    """POST `rows` to a fresh gunicorn, wait for `completed` with one worker per entry of
    `worker_envs` (each with its own extra settings), and count what the job left."""
    api = Api(dict(env))
    with ExitStack() as stack:
        # The workers boot while gunicorn does (a worker takes the longer).
        workers = [stack.enter_context(celery_process("worker", {**env, **extra}, tmp,
                                                      name=f"{name}-w{i}"))
                   for i, extra in enumerate(worker_envs)]
        base_url, web = stack.enter_context(web_process(env, tmp, name=f"{name}-web"))
        http = HttpApi(base_url, api.key)
        for worker in workers:  # connected to the broker before the clock starts
            wait_ready(worker)
        pids = [w.popen.pid for w in workers]
        worker_before = sum(tree_cpu_seconds(pid) for pid in pids)
        web_before = tree_cpu_seconds(web.popen.pid)
        with ExitStack() as sampling:
            peaks = [sampling.enter_context(peak_rss(pid, interval=0.25)) for pid in pids]
            database = sampling.enter_context(_database_cpu(env["DATABASE_URL"]))
            started = time.perf_counter()
            request_id = http.submit(rows)
            status = http.wait(request_id, timeout=timeout, diagnostics=workers[0].tail)
            elapsed = time.perf_counter() - started
            cpu = {"worker": sum(tree_cpu_seconds(pid) for pid in pids) - worker_before,
                   "web": tree_cpu_seconds(web.popen.pid) - web_before}
        cpu.update(database)
        peak = max(p() for p in peaks)
    run = JobRun(len(rows), elapsed, status, request_id, cpu, peak)
    run.counts = exact_counts(api, run)
    api.services.db.dispose()
    return run


def exact_counts(api: Api, run: JobRun) -> dict[str, int]:
    """The job's counters against its rows in the database and its report, and each row's
    attempts and claims; raises if any two disagree or a row was tested twice."""
    db = Database(api.services.settings.sqlalchemy_url)
    try:
        with db.reading() as session:
            where = ConnectJobRow.job_id == run.request_id
            by_state = dict(session.execute(select(ConnectJobRow.state, func.count())
                                            .where(where).group_by(ConnectJobRow.state)).all())
            ok = session.scalar(select(func.count())
                                .where(where, ConnectJobRow.account_status == 1))
            attempts, claims, most = session.execute(
                select(func.sum(ConnectJobRow.attempts), func.sum(ConnectJobRow.claims),
                       func.max(ConnectJobRow.attempts)).where(where)).one()
    finally:
        db.dispose()
    report = Api.report(run.status)
    status = run.status
    counts = {"rows": run.rows, "total": status["total"], "processed": status["processed"],
              "succeeded": status["succeeded"], "failed": status["failed"],
              "db_rows": sum(by_state.values()), "db_done": by_state.get("done", 0),
              "db_succeeded": ok, "report_rows": len(report),
              "report_succeeded": sum(r["status"] == "connected" for r in report),
              "attempts": int(attempts), "claims": int(claims), "max_attempts": int(most)}
    exact = (counts["rows"] == counts["total"] == counts["processed"] == counts["db_rows"]
             == counts["db_done"] == counts["report_rows"] == counts["attempts"]
             and counts["succeeded"] == counts["db_succeeded"] == counts["report_succeeded"]
             and counts["max_attempts"] == 1 and counts["claims"] >= counts["rows"])
    assert exact, f"counters disagree: {counts}"
    return counts
