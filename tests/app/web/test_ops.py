"""/readyz and /metrics as operators call them: no API key, each dependency down in turn."""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from app import metrics
from app.config import load_settings
from app.devserver import free_port
from app.storage import s3_report_store
from app.web import create_app
from tests.app.test_metrics import samples
from tests.app.web.error_shape import assert_error_shape
from tests.conftest import FakeQueue
from tests.servers.redis_server import private_redis


def app_client(env: dict[str, str], **overrides: str):
    settings = load_settings(**{**env, "READINESS_TIMEOUT_SECONDS": "2", **overrides})
    return create_app(settings=settings, queue=FakeQueue()).test_client()


@pytest.fixture
def bucket(services, env):
    services.store.ensure_bucket()  # the env's bucket, created as the worker would
    return env["S3_BUCKET"]


def test_ready_when_every_dependency_answers(env, bucket):
    response = app_client(env).get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ready"
    assert {name: check["ok"] for name, check in response.json["checks"].items()} == {
        "database": True, "redis": True, "bucket": True}


def test_not_ready_when_redis_stopped(env, bucket, tmp_path):
    with private_redis(tmp_path) as url:
        client = app_client(env, REDIS_URL=url)
        assert client.get("/readyz").status_code == 200
    # The redis-server has stopped.
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["redis"]
    assert_error_shape(response.json)
    assert response.json["errors"][0]["field"] == "redis"
    assert response.json["message"] == "redis: not ready"
    assert response.json["checks"]["database"]["ok"] and response.json["checks"]["bucket"]["ok"]


def test_not_ready_when_the_database_is_unreachable(env, bucket):
    closed = f"postgresql+psycopg://mailconnect:x@127.0.0.1:{free_port()}/mailconnect"
    response = app_client(env, DATABASE_URL=closed).get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["database"]
    assert response.json["checks"]["database"]["error"] == "OperationalError"


def test_not_ready_when_the_bucket_is_unreachable(env, bucket):
    response = app_client(env, S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}").get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["bucket"]


def test_a_missing_bucket_is_made_so_a_new_deployment_turns_ready(env):
    """Nothing else makes the bucket before the first report: web pods that waited for it
    would never turn ready, and no job could be submitted to make it."""
    name = f"new-bucket-{secrets.token_hex(4)}"
    store = s3_report_store(load_settings(**{**env, "S3_BUCKET": name}))
    with pytest.raises(ClientError):
        store._client.head_bucket(Bucket=name)
    response = app_client(env, S3_BUCKET=name).get("/readyz")
    assert response.status_code == 200, response.json
    store._client.head_bucket(Bucket=name)


def test_healthz_stays_liveness_only(env):
    closed = f"postgresql+psycopg://mailconnect:x@127.0.0.1:{free_port()}/mailconnect"
    assert app_client(env, DATABASE_URL=closed).get("/healthz").status_code == 200


def test_metrics_need_no_api_key_and_show_every_family(env, services):
    metrics.install_prometheus()
    metrics.rows_finished("failed")
    response = app_client(env).get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    names = {name for name, _ in samples(response.text)}
    assert {"mailconnect_rows_processed_total", "mailconnect_jobs",
            "mailconnect_queue_messages", "mailconnect_hosts_active",
            "mailconnect_metrics_source_up"} <= names


def test_metrics_token_when_set(env):
    client = app_client(env, METRICS_TOKEN="s3cret-scrape")
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "s3cret" not in wrong.text
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert right.status_code == 200
