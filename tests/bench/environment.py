"""The environment a benchmark's mailconnect processes run with: a migrated database and the
local Redis, S3 and test CA."""

from __future__ import annotations

from pathlib import Path

from app.config import load_settings
from app.credentials import CredentialCipher
from app.migrate import upgrade
from tests.servers.tls import TestPKI


def service_env(tmp: Path, db_url: str, redis_url: str, s3: str, pki: TestPKI,
                **extra: str) -> dict[str, str]:
    upgrade(load_settings(DATABASE_URL=db_url).sqlalchemy_url)
    return {
        "MAILCONNECT_DATA_DIR": str(tmp / "data"), "DATABASE_URL": db_url,
        "REDIS_URL": redis_url, "S3_ENDPOINT_URL": s3, "S3_BUCKET": "bench",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
        "PROBE_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
        "PROBE_EXTRA_CA_FILE": str(pki.ca_file),
        **extra,
    }
