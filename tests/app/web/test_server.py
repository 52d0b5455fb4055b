import sys

from app.web.server import post_worker_init


def test_gunicorn_workers_switch_threads_quickly():
    before = sys.getswitchinterval()
    try:
        post_worker_init(worker=None)
        assert sys.getswitchinterval() <= 0.001
    finally:
        sys.setswitchinterval(before)
