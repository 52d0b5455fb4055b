"""Worker and beat entry point: `celery -A workers.celery_app worker|beat`."""

from workers.factory import make_celery

app = make_celery()
