"""Report storage: one interface, one S3-compatible implementation (AWS, MinIO, moto)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings

log = logging.getLogger(__name__)


# boto3's default keeps up to 10 parts of 8 MB in flight. A report below 64 MB goes up as one
# PUT streamed from its file; a larger one in parts, two at a time.
UPLOAD = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=16 * 2**20,
                        max_concurrency=2)


class StorageError(Exception):
    """The object store could not be reached or refused the request; worth retrying."""


class ReportStore(Protocol):
    def ensure_bucket(self) -> None: ...

    def upload_file(self, key: str, path: Path, content_type: str) -> None: ...

    def download_url(self, key: str, expires_in: int) -> str: ...

    def delete(self, key: str) -> None:
        """Remove the object; a key that is already gone is not an error."""
        ...


class S3ReportStore:
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """`timeout`: seconds for connecting and for each read, with no retry (readiness
        checks); None keeps botocore's own, with three tries."""
        self.bucket = bucket
        self._region = region
        session = boto3.session.Session(aws_access_key_id=access_key_id,
                                        aws_secret_access_key=secret_access_key,
                                        region_name=region)
        limits = {} if timeout is None else {"connect_timeout": timeout,
                                             "read_timeout": timeout}
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        retries={"max_attempts": 3 if timeout is None else 1,
                                 "mode": "standard"}, **limits)
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # Presigned URLs embed the host they were signed for, so they must be signed for the
        # address clients download from (e.g. MinIO's public name, not its docker-network one).
        self._signer = (
            session.client("s3", endpoint_url=public_endpoint_url, config=config)
            if public_endpoint_url and public_endpoint_url != endpoint_url
            else self._client
        )

    def ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise StorageError(f"cannot reach bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach object storage: {exc}") from exc
        log.info("creating report bucket %s", self.bucket)
        kwargs: dict = {"Bucket": self.bucket}
        if self._region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou", "BucketAlreadyExists"
            ):
                raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc

    def upload_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            self._client.upload_file(str(path), self.bucket, key, Config=UPLOAD,
                                     ExtraArgs={"ContentType": content_type})
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"upload of {key} failed: {exc}") from exc

    def download_url(self, key: str, expires_in: int) -> str:
        try:
            return self._signer.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot sign a link to {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchBucket"):
                return
            raise StorageError(f"delete of {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"delete of {key} failed: {exc}") from exc


def s3_report_store(settings: Settings, timeout: float | None = None) -> S3ReportStore:
    """The configured bucket's store."""
    secret = settings.aws_secret_access_key
    return S3ReportStore(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url,
        region=settings.aws_region,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
        timeout=timeout,
    )
