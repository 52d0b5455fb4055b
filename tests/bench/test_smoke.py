"""The benchmarks, small, as CI smoke tests: they must run to the end and print well-formed
results with the machine reference, and their counters must be exact. No timing is asserted;
the full runs' numbers are in the README."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import services

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_bench(module: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "BENCH_REFERENCE_RUNS": "1"})  # 1 loop, not 3
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "machine reference: " in done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["machine_reference_s"] > 0
    return result


def databases(database_url: str) -> list[str]:
    """SQLite, and PostgreSQL when the run has one (CI does): `--database-url` arguments."""
    urls = ["sqlite"] + ([database_url] if services.database_url() else [])
    return [arg for url in urls for arg in ("--database-url", url)]


def exact(counters: dict, rows: int) -> bool:
    return (counters["total"] == counters["processed"] == counters["db_rows"]
            == counters["report_rows"] == counters["attempts"] == rows
            and counters["succeeded"] == counters["db_succeeded"]
            == counters["report_succeeded"] == rows
            and counters["max_attempts"] == 1 and counters["claims"] >= rows)


def test_throughput_benchmark_runs(database_url):
    result = run_bench("tests.bench.throughput", "--accounts", "20", "--runs", "1",
                       "--latency-ms", "5", *databases(database_url))
    expected = {"sqlite", "postgresql"} if services.database_url() else {"sqlite"}
    assert {r["database"] for r in result["results"]} == expected
    for run in result["results"]:
        assert run["accounts"] == 20 and len(run["baseline_s"]) == len(run["system_s"]) == 1
        assert run["counters_exact"] is True
        assert {"ratio", "baseline_cpu_ms_per_account", "worker_cpu_ratio"} <= set(run)
        cpu = run["cpu_ms_per_row"]
        assert cpu["worker"] > 0 and cpu["web"] > 0
        if run["database"] == "sqlite":
            assert cpu["database"] == "in-process"
        else:
            assert cpu["database"] > 0 and cpu["db_server"] >= cpu["database"]


def test_probeloop_benchmark_runs():
    result = run_bench("tests.bench.probeloop", "--accounts", "20", "--runs", "1",
                       "--latency-ms", "5")
    assert result["accounts"] == 20 and result["all_verified"] is True
    assert set(result["cpu_ms_per_account"]) == {"baseline", "asyncio", "uvloop"}
    assert all(len(runs) == 1 and runs[0] > 0 for runs in result["cpu_ms_per_account"].values())
    assert set(result["cpu_ratio_to_baseline"]) == {"asyncio", "uvloop"}


def test_polling_benchmark_runs(database_url):
    result = run_bench("tests.bench.polling", "--accounts", "100", "--runs", "1",
                       "--seconds", "1", *databases(database_url))
    expected = {"sqlite", "postgresql"} if services.database_url() else {"sqlite"}
    assert set(result["databases"]) == expected
    for polled in result["databases"].values():
        assert polled["paced_median_p99_ms"] > 0 and polled["flat_out"]["requests_per_s"] > 0
        assert polled["idle"]["job_processed"] == 5
        for run in (*polled["paced"], polled["flat_out"], polled["idle"]):
            server = run["server"]
            assert server["polls"] > 0 and 0 < server["p50_ms"] <= server["p99_ms"]


def test_scaleout_benchmark_runs():
    # 2 workers x 4 threads against a cap of 3: a cap counted per process would let 4 through.
    result = run_bench("tests.bench.scaleout", "--accounts", "30", "--workers", "2",
                       "--concurrency", "8", "--cap", "3", "--latency-ms", "5")
    (run,) = result["results"]
    assert (run["workers"], run["concurrency_each"]) == (2, 4)
    assert run["cap_held"] and 1 <= run["peak_smtp"] <= 3 and 1 <= run["peak_imap"] <= 3
    assert run["logged_in_once"] and run["sessions_smtp"] == run["sessions_imap"] == 30
    assert exact(run["counters"], 30)


def test_bigjob_benchmark_runs():
    result = run_bench("tests.bench.bigjob", "--rows", "10", "--rows", "30", "--latency-ms", "5")
    assert set(result["sizes"]) == {"10", "30"}
    for size, figures in result["sizes"].items():
        assert exact(figures["counters"], int(size))
        assert figures["worker_peak_rss_mb"] > 0 and figures["ms_per_row"] > 0
    assert result["time_per_row_ratio"] > 0 and result["rss_ratio"] > 0


def test_submit_benchmark_runs():
    result = run_bench("tests.bench.submit", "--rows", "300", "--runs", "1")
    assert result["rows"] == 300 and result["json_median_s"] > 0 and result["csv_median_s"] > 0
    assert result["unknown_domains_median_s"] > 0
    assert result["web_peak_rss_mb"] > 0


def test_memory_benchmark_runs():
    result = run_bench("tests.bench.memory", "--rows", "50", "--rows", "150")
    assert set(result["worker_peak_rss_mb"]) == {"50", "150"} and result["ratio"] > 0


def test_busyhost_benchmark_runs():
    result = run_bench("tests.bench.busyhost", "--rows", "60", "--cap", "3",
                       "--latency-ms", "5")
    assert (result["rows"], result["cap"], result["succeeded"]) == (60, 3, 60)
    assert result["claims"] >= 60 and result["messages"] >= 2, "a start_job and a finish_job"
    assert 1 <= result["peak_smtp"] <= 3 and 1 <= result["peak_imap"] <= 3
    assert result["probe_ms"] > 0 and result["wall_ratio"] > 0


def test_hostcap_benchmark_runs():
    # 2 workers of 100 threads each against a cap of 3, counted in the proxies' own processes.
    result = run_bench("tests.bench.hostcap", "--accounts", "20", "--cap", "3",
                       "--workers", "2")
    assert (result["accounts"], result["succeeded"]) == (20, 20)
    assert result["cap_held"] and 1 <= result["peak_smtp"] <= 3 and 1 <= result["peak_imap"] <= 3
    assert result["sessions_smtp"] == result["sessions_imap"] == 20


def test_ratelimit_benchmark_runs():
    result = run_bench("tests.bench.ratelimit", "--rounds", "2", "--polls", "20")
    assert result["on_ms"] > 0 and result["off_ms"] > 0 and result["ratio"] > 0


def test_jobpath_benchmark_runs(database_url):
    result = run_bench("tests.bench.jobpath", "--rows", "40", "--runs", "1",
                       *databases(database_url))
    assert len(result["results"]) == len(databases(database_url)) // 2
    for each in result["results"]:
        assert each["rows"] == 40 and each["median_cpu_ms_per_row"] > 0
        # Four runners of ten rows: one claim, then ten results, each but the last claiming the
        # next row (not a claim and a result per row); then the successor the last runner
        # announced finds none left: 45 commits, not 81.
        assert each["commits_per_row"] == round(45 / 40, 3)
