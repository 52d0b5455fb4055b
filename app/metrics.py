"""What the service counts, for Prometheus.

The domain records through the small functions at the top (`rows_finished`,
`protocol_probed`), which hand each event to the process's installed `MetricsRecorder`: none
(`NullRecorder`) until a process entry point installs the Prometheus one, and tests swap in
their own. Recording never raises: a metric must not fail a row.

Two kinds of numbers:
- events (rows finished, probe results, probe latency) are counters and a histogram written
  by the process where they happen. Under gunicorn's several workers and beside Celery workers
  on one machine, prometheus-client's multiprocess mode keeps them in files under
  PROMETHEUS_MULTIPROC_DIR, and any process's scrape adds them all up;
- state (jobs by status, queue depth, active probes per host) is read at scrape time from the
  database and Redis by `app.state_metrics.StateCollector`, so it is true whichever process
  serves the scrape and needs no bookkeeping on the hot path.

prometheus_client is imported only inside functions: its multiprocess switch is read from the
environment when it is first imported, which `prepare_multiprocess` must be able to set first.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Probe latency: a local server answers in milliseconds, a slow provider in seconds, and the
# deadline (PROBE_TIMEOUT_SECONDS, 20 s by default, at most 300) ends the rest.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
ROW_OUTCOMES = ("connected", "failed", "invalid", "cancelled")


class MetricsRecorder(Protocol):
    def rows_finished(self, outcome: str, count: int = 1) -> None:
        """`count` rows became final: connected, failed, invalid or cancelled."""

    def protocol_probed(self, protocol: str, code: str | None, seconds: float) -> None:
        """One SMTP or IMAP test ended: `code` None when it passed."""


class NullRecorder:
    def rows_finished(self, outcome: str, count: int = 1) -> None:
        pass

    def protocol_probed(self, protocol: str, code: str | None, seconds: float) -> None:
        pass


class PrometheusRecorder:
    """The counters and histogram, in `registry` (a private one by default, so two recorders
    in one process, as in tests, do not clash)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self.rows = Counter(
            "mailconnect_rows_processed", "Rows that became final, by outcome",
            ["outcome"], registry=self.registry)
        self.results = Counter(
            "mailconnect_probe_results", "SMTP and IMAP tests by protocol and error code "
            "(ok: passed)", ["protocol", "code"], registry=self.registry)
        self.latency = Histogram(
            "mailconnect_probe_duration_seconds", "Time of one SMTP or IMAP test, from "
            "resolving the host to the verdict", ["protocol"], buckets=LATENCY_BUCKETS,
            registry=self.registry)
        # Every outcome is exported from the start, at 0, so rate() sees the first one.
        for outcome in ROW_OUTCOMES:
            self.rows.labels(outcome)

    def rows_finished(self, outcome: str, count: int = 1) -> None:
        if count:
            self.rows.labels(outcome).inc(count)

    def protocol_probed(self, protocol: str, code: str | None, seconds: float) -> None:
        self.results.labels(protocol, code or "ok").inc()
        self.latency.labels(protocol).observe(seconds)


_recorder: MetricsRecorder = NullRecorder()
_installed: PrometheusRecorder | None = None
_lock = threading.Lock()


def install(recorder: MetricsRecorder) -> MetricsRecorder:
    """Make `recorder` the process's; returns the one it replaces (tests put it back)."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


def recorder() -> MetricsRecorder:
    return _recorder


def install_prometheus() -> PrometheusRecorder:
    """The process's Prometheus recorder, created and installed once (web and worker entry
    points call this; in multiprocess mode its values go to PROMETHEUS_MULTIPROC_DIR)."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = PrometheusRecorder()
        install(_installed)
        return _installed


def rows_finished(outcome: str, count: int = 1) -> None:
    try:
        _recorder.rows_finished(outcome, count)
    except Exception:  # a metric must never fail the row it counts
        log.warning("could not record rows_finished", exc_info=True)


def protocol_probed(protocol: str, code: str | None, seconds: float) -> None:
    try:
        _recorder.protocol_probed(protocol, code, seconds)
    except Exception:  # a metric must never fail the probe it times
        log.warning("could not record protocol_probed", exc_info=True)


# --- multiprocess mode -------------------------------------------------------------------

def prepare_multiprocess(directory: Path) -> Path:
    """Point prometheus-client at `directory` (unless the environment already names one) and
    make sure it exists. Call before anything imports prometheus_client: children forked or
    started from this process inherit the variable."""
    chosen = Path(os.environ.setdefault(MULTIPROC_ENV, str(directory)))
    chosen.mkdir(parents=True, exist_ok=True)
    forget_dead_processes(chosen)
    # prometheus_client picks its value storage when first imported, and something may have
    # imported it already (Celery loads its command plugins, Flower's among them, before any
    # worker hook runs): pick again, now that the directory is set. Only metrics created from
    # here on use it, which is why the recorder is created after this.
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()
    return chosen


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def forget_dead_processes(directory: Path) -> None:
    """Remove the value files of processes that no longer exist (from an earlier run, or a
    crashed one), as the client's docs ask for at startup. Their counters leave the sum,
    which Prometheus reads as a counter reset, as it does after any restart."""
    for path in directory.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit: the dead worker's live gauges leave the sum (its counters stay,
    so totals never go backwards while the service runs)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def serve(port: int) -> None:
    """This process's own /metrics on `port` (a thread), for a worker that no web process on
    its machine scrapes for it. Only events: state is the web's to export."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)
    else:
        registry.register(_RecorderCollector(install_prometheus()))
    start_http_server(port, registry=registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the scrape --------------------------------------------------------------------------

def exposition(extra: Iterable[Any] = ()) -> tuple[bytes, str]:
    """The scrape's body and content type: every process's events (multiprocess mode), or
    this process's (not), followed by the `extra` collectors' families."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)
    else:
        registry.register(_RecorderCollector(install_prometheus()))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def exposition_of(recorder: PrometheusRecorder) -> bytes:
    """One recorder's families alone (tests, and a process without multiprocess mode)."""
    from prometheus_client import generate_latest

    return generate_latest(recorder.registry)


class _RecorderCollector:
    """This process's recorder, for a scrape registry of its own."""

    def __init__(self, recorder: PrometheusRecorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterator[Any]:
        yield from self._recorder.registry.collect()
