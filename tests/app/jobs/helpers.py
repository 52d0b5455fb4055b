"""What the job-control tests share: a finished job, its files, a team."""

from __future__ import annotations

import csv
import io

import requests

from app.jobs.finish import finish_job
from app.jobs.status import job_view
from tests.app.jobs.doubles import FakeProber
from tests.app.jobs.test_runner import run_all, submit


def finished_job(services, team_id, rows) -> str:
    """Submit rows, test them with FakeProber (an smtpHost starting 'bad' fails), finish."""
    job = submit(services, team_id, rows)
    run_all(services, job.job_id, FakeProber())
    assert finish_job(services.db, services.clock, services.store, job.job_id)
    return job.job_id


def download(services, key: str) -> tuple[str, list[dict[str, str]]]:
    text = requests.get(services.store.download_url(key, 60), timeout=10).text
    return text, list(csv.DictReader(io.StringIO(text)))


def view(services, team_id, job_id):
    return job_view(services.db, team_id, job_id)
