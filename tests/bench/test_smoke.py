"""The benchmarks, small, as CI smoke tests: they must run to the end and print well-formed
results. No timing is asserted; the full runs' numbers are in the README."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_bench(module: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_throughput_benchmark_runs():
    result = run_bench("tests.bench.throughput", "--accounts", "200", "--runs", "1",
                       "--latency-ms", "5")
    assert result["accounts"] == 200
    assert len(result["baseline_s"]) == len(result["system_s"]) == 1
    assert result["ratio"] > 0 and result["efficiency"] > 0


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


def test_ratelimit_benchmark_runs():
    result = run_bench("tests.bench.ratelimit", "--rounds", "2", "--polls", "20")
    assert result["on_ms"] > 0 and result["off_ms"] > 0 and result["ratio"] > 0
