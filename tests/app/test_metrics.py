"""The metrics interface: what the domain records reaches Prometheus, counted once, and the
processes of one machine add up."""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.credentials import Secret
from app.probe import Encryption, Endpoint, Prober, ProbeSettings
from app.probe.policy import OPEN_POLICY
from tests.conftest import USERS

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def recorder():
    mine = metrics.PrometheusRecorder()
    previous = metrics.install(mine)
    yield mine
    metrics.install(previous)


def value(recorder: metrics.PrometheusRecorder, name: str, **labels: str) -> float:
    found = recorder.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_each_protocol_test_is_counted_by_code_and_timed(recorder, pki, smtp_server):
    prober = Prober(ProbeSettings(timeout_seconds=5, allow_networks=(ip_network("127.0.0.0/8"),),
                                  extra_ca_file=str(pki.ca_file), host_policy=OPEN_POLICY))
    user, password = next(iter(USERS.items()))

    def smtp(secret: str) -> Endpoint:
        return Endpoint("localhost", smtp_server.starttls_port, Encryption.STARTTLS, user,
                        Secret(secret))

    prober.probe_sync(smtp(password), None)
    prober.probe_sync(smtp("wrong"), None)
    prober.probe_sync(smtp("wrong"), None)

    assert value(recorder, "mailconnect_probe_results_total", protocol="smtp", code="ok") == 1
    assert value(recorder, "mailconnect_probe_results_total", protocol="smtp",
                 code="auth_failed") == 2
    # A skipped protocol is no test: nothing recorded for IMAP.
    assert value(recorder, "mailconnect_probe_duration_seconds_count", protocol="imap") == 0
    assert value(recorder, "mailconnect_probe_duration_seconds_count", protocol="smtp") == 3
    assert value(recorder, "mailconnect_probe_duration_seconds_sum", protocol="smtp") > 0


def test_rows_are_counted_by_outcome(recorder):
    metrics.rows_finished("connected")
    metrics.rows_finished("invalid", 3)
    metrics.rows_finished("cancelled", 0)
    assert value(recorder, "mailconnect_rows_processed_total", outcome="connected") == 1
    assert value(recorder, "mailconnect_rows_processed_total", outcome="invalid") == 3
    # Every outcome is exported from the start, so a dashboard's rate() has a series.
    text = metrics.exposition_of(recorder).decode()
    assert 'mailconnect_rows_processed_total{outcome="cancelled"} 0.0' in text


def test_a_failing_recorder_never_fails_the_caller(caplog):
    class Broken:
        def rows_finished(self, outcome, count=1):
            raise OSError("disk full")

        def protocol_probed(self, protocol, code, seconds):
            raise OSError("disk full")

    previous = metrics.install(Broken())
    try:
        metrics.rows_finished("connected")
        metrics.protocol_probed("smtp", None, 0.1)
    finally:
        metrics.install(previous)
    assert "could not record rows_finished" in caplog.text


def test_files_of_dead_processes_are_forgotten(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"counter_{dead}.db").write_bytes(b"x")
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"x")
    metrics.forget_dead_processes(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"counter_{os.getpid()}.db"]


COUNT = """
from app import metrics
metrics.install_prometheus()
metrics.rows_finished("connected", {n})
metrics.protocol_probed("imap", "auth_failed", 0.3)
"""
SCRAPE = "import sys; from app import metrics; sys.stdout.write(metrics.exposition()[0].decode())"


def test_processes_of_one_machine_add_up(tmp_path):
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}
    for n in (2, 5):  # two processes that count, then end
        subprocess.run([sys.executable, "-c", COUNT.format(n=n)], env=env, cwd=ROOT, check=True)
    scraped = subprocess.run([sys.executable, "-c", SCRAPE], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    found = samples(scraped)
    assert found[("mailconnect_rows_processed_total", (("outcome", "connected"),))] == 7
    assert found[("mailconnect_probe_results_total",
                  (("code", "auth_failed"), ("protocol", "imap")))] == 2
    assert found[("mailconnect_probe_duration_seconds_count", (("protocol", "imap"),))] == 2


def test_a_worker_can_serve_its_own_metrics(recorder):
    import requests

    from app.devserver import free_port

    installed = metrics.install_prometheus()  # what the worker's hook serves
    try:
        before = value(installed, "mailconnect_rows_processed_total", outcome="failed")
        metrics.rows_finished("failed", 2)
        port = free_port()
        metrics.serve(port)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        metrics.install(recorder)
    served = samples(text)[("mailconnect_rows_processed_total", (("outcome", "failed"),))]
    assert served - before == 2


def test_rows_final_at_intake_and_cancel_are_counted(recorder, services):
    from app.jobs.controls import cancel_job
    from app.teams import create_api_key
    from tests.app.jobs.test_runner import submit
    from tests.factories import bulk_row

    team_id = create_api_key(services.db, services.clock, "acme").team_id
    job = submit(services, team_id, [bulk_row("a@example.com"), bulk_row("b@example.com"),
                                     bulk_row("not-an-email")])
    assert value(recorder, "mailconnect_rows_processed_total", outcome="invalid") == 1
    cancel_job(services.db, services.clock, team_id, job.job_id)
    assert value(recorder, "mailconnect_rows_processed_total", outcome="cancelled") == 2
