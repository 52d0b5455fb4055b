"""Shared fixtures. Real PostgreSQL and Redis when TEST_DATABASE_URL / TEST_REDIS_URL are set
(CI sets both); otherwise a SQLite file per test and a private redis-server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from app.clock import SystemClock
from app.config import Settings, load_settings
from app.credentials import CredentialCipher
from app.db import Database
from app.jobs.loginquota import KEY_PREFIX as LOGIN_QUOTA_KEYS
from app.migrate import upgrade
from app.models import Base
from app.services import Services, build_services
from app.storage import S3ReportStore
from app.teams import create_api_key
from tests.servers import services as external_services
from tests.servers.dovecot import start_mail_server
from tests.servers.redis_server import private_redis
from tests.servers.s3 import moto_s3
from tests.servers.smtp import start_smtp_server
from tests.servers.tls import TestPKI, make_pki

# Mailboxes on the real test servers (Dovecot and aiosmtpd), with awkward passwords on purpose.
USERS = {
    "alice@example.test": "alice-Pa55!",
    "bob@example.test": 'bob "quoted" pass',
    "carol@example.test": "carol-pässword",
    "dave@example.test": "dave-pw",
    "erin@example.test": "erin-pw",
    "grace@example.test": "grace-pw",
}


@pytest.fixture(scope="session")
def mail_server(tmp_path_factory, pki):
    with start_mail_server(tmp_path_factory.mktemp("dovecot"), pki, USERS) as server:
        yield server


@pytest.fixture(scope="session")
def smtp_server(pki):
    with start_smtp_server(pki, USERS) as server:
        yield server


@pytest.fixture(scope="session")
def untrusted_smtp_server(pki):
    with start_smtp_server(pki, USERS, cert="self_signed") as server:
        yield server


TEST_DATABASE_URL = external_services.database_url()
TEST_REDIS_URL = external_services.redis_url()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    if TEST_REDIS_URL:
        yield TEST_REDIS_URL
        return
    with private_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def credentials_key() -> str:
    return CredentialCipher.generate_key()


@pytest.fixture(scope="session")
def _postgres_schema() -> None:
    if TEST_DATABASE_URL:
        engine = Database(load_settings(DATABASE_URL=TEST_DATABASE_URL).sqlalchemy_url).engine
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
        upgrade(load_settings(DATABASE_URL=TEST_DATABASE_URL).sqlalchemy_url)


@pytest.fixture
def database_url(tmp_path: Path, _postgres_schema) -> str:
    """A clean, migrated database for this test."""
    if TEST_DATABASE_URL:
        url = load_settings(DATABASE_URL=TEST_DATABASE_URL).sqlalchemy_url
        engine = Database(url).engine
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return url
    url = f"sqlite:///{tmp_path / 'mailconnect.db'}"
    upgrade(url)
    return url


@pytest.fixture
def env(tmp_path: Path, database_url: str, s3_endpoint: str, redis_url: str, pki: TestPKI,
        credentials_key: str) -> dict[str, str]:
    """The environment a real deployment would have, pointed at this test's services."""
    # Team ids start again at 1 in every test's database, and Redis is the session's: a login
    # quota log left by an earlier test would count against this one's teams.
    quota_logs = redis.Redis.from_url(redis_url)
    for key in quota_logs.scan_iter(f"{LOGIN_QUOTA_KEYS}:*"):
        quota_logs.delete(key)
    quota_logs.close()
    return {
        "MAILCONNECT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": f"reports-{uuid.uuid4().hex[:12]}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CREDENTIALS_KEYS": credentials_key,
        "PROBE_TIMEOUT_SECONDS": "5",
        "PROBE_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
        # The test servers listen on random high ports; production keeps the mail ports.
        "PROBE_ALLOWED_PORTS": "1-65535",
        "PROBE_EXTRA_CA_FILE": str(pki.ca_file),
        # Limits stay on (every request goes through the limiter), far above what any test
        # sends from one key; tests/app/web/test_ratelimit.py sets real ones.
        **{f"RATE_LIMIT_{category}": "100000/minute"
           for category in ("BULK", "SINGLE", "POLL", "MANAGE")},
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(**env)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings, clock=SystemClock())
    built.mx_resolvers = NoMx  # tests never reach real DNS
    assert isinstance(built.store, S3ReportStore)
    built.store.ensure_bucket()
    yield built
    built.db.engine.dispose()


class NoMx:
    """An MX resolver that recognises nothing (tests needing answers pass their own)."""

    def mx_hosts(self, domain: str) -> list[str]:
        return []


class FakeQueue:
    """Records what would have been published."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.rows: list[int] = []
        self.finished: list[str] = []

    def start_job(self, job_id: str) -> None:
        self.started.append(job_id)

    def wake_rows(self, row_ids) -> None:
        self.rows.extend(row_ids)

    def finish_job(self, job_id: str) -> None:
        self.finished.append(job_id)


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def api_key(services: Services) -> str:
    return create_api_key(services.db, services.clock, "acme").key


@pytest.fixture
def client(services: Services, queue: FakeQueue):
    from app.web import create_app

    return create_app(services=services, queue=queue).test_client()
