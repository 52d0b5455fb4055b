"""Worker and beat entry point: `celery -A workers.celery_app worker|beat`."""

from workers import signals  # noqa: F401 - connects the process hooks (logs, metrics)
from workers.factory import make_celery

app = make_celery()
