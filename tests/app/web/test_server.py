import sys
from types import SimpleNamespace

from app.web.server import post_worker_init


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args) -> None:
        self.lines.append(message % args)


def test_a_gunicorn_worker_switches_threads_quickly_and_says_when_it_serves():
    before = sys.getswitchinterval()
    worker = SimpleNamespace(pid=4242, log=RecordingLog())
    try:
        post_worker_init(worker)
        assert sys.getswitchinterval() <= 0.001
    finally:
        sys.setswitchinterval(before)
    # The benchmarks start their clocks once every worker has logged this (WEB_WORKER_SERVING).
    assert worker.log.lines == ["Worker 4242 loaded the app and is serving"]
