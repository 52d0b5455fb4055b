"""Stand-ins the job tests (and the jobpath benchmark) share: a prober that answers at once,
a clock that moves only when told, and a queue that records what a runner published."""

from __future__ import annotations

import datetime as dt
import threading

from app.probe.model import AccountProbe, ErrorCode, ProtocolResult

OK = ProtocolResult("ok", duration_ms=5)



class FakeProber:
    """Verifies every mailbox except those whose SMTP host starts with 'bad'."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def probe_sync(self, smtp, imap):
        with self.lock:
            self.calls.append((smtp, imap))
        if smtp.host.startswith("bad"):
            failed = ProtocolResult("failed", ErrorCode.AUTH_FAILED, "535 5.7.8 not accepted")
            return AccountProbe(smtp=failed, imap=OK, duration_ms=7)
        return AccountProbe(smtp=OK, imap=OK, duration_ms=7)


class FakeClock:
    def __init__(self) -> None:
        self.current = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)


class RecordingQueue:
    """What a runner published, in order."""

    def __init__(self) -> None:
        self.published: list[tuple] = []

    def start_job(self, job_id):
        self.published.append(("start_job", job_id))

    def run_rows(self, job_id, runners):
        self.published.append(("run_rows", job_id, runners))

    def wake_rows(self, row_ids):
        self.published.extend(("probe_row", row_id) for row_id in row_ids)

    def probe_row_later(self, row_id, delay_seconds):
        self.published.append(("probe_row_later", row_id))

    def finish_job(self, job_id):
        self.published.append(("finish_job", job_id))
