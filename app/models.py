"""Tables. The database is the source of truth for every job, row and account."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.db import UTCDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class RowState(StrEnum):
    PENDING = "pending"
    TESTING = "testing"
    DONE = "done"
    INVALID = "invalid"


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class EmailAccount(Base):
    __tablename__ = "email_accounts"
    __table_args__ = (UniqueConstraint("team_id", "email", name="uq_email_accounts_team_email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(32))
    from_first_name: Mapped[str | None] = mapped_column(String(200))
    from_last_name: Mapped[str | None] = mapped_column(String(200))
    from_name: Mapped[str | None] = mapped_column(String(400))

    smtp_email: Mapped[str] = mapped_column(String(320))
    smtp_username: Mapped[str] = mapped_column(String(320))
    smtp_host: Mapped[str] = mapped_column(String(253))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_encryption: Mapped[str] = mapped_column(String(16))
    imap_email: Mapped[str | None] = mapped_column(String(320))
    imap_username: Mapped[str | None] = mapped_column(String(320))
    imap_host: Mapped[str | None] = mapped_column(String(253))
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_encryption: Mapped[str | None] = mapped_column(String(16))
    credentials: Mapped[str] = mapped_column(Text)  # CredentialCipher token of both passwords
    smtp_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # Sending settings: stored and shown for the tools that send (Smartlead's fields).
    max_email_per_day: Mapped[int | None] = mapped_column(Integer)
    min_delay_minutes: Mapped[int | None] = mapped_column(Integer)
    warmup_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    warmup_per_day: Mapped[int | None] = mapped_column(Integer)
    warmup_daily_rampup: Mapped[int | None] = mapped_column(Integer)
    warmup_reply_rate: Mapped[int | None] = mapped_column(Integer)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    bcc: Mapped[str | None] = mapped_column(String(320))
    signature: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str] | None] = mapped_column(JSON)

    status: Mapped[int] = mapped_column(SmallInteger, default=0)
    smtp_result: Mapped[str | None] = mapped_column(String(16))
    smtp_error_code: Mapped[str | None] = mapped_column(String(64))
    smtp_error: Mapped[str | None] = mapped_column(Text)
    imap_result: Mapped[str | None] = mapped_column(String(16))
    imap_error_code: Mapped[str | None] = mapped_column(String(64))
    imap_error: Mapped[str | None] = mapped_column(Text)
    last_tested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ConnectJob(Base):
    __tablename__ = "connect_jobs"
    __table_args__ = (Index("ix_connect_jobs_status", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the public requestId
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    ignored_columns: Mapped[list[str] | None] = mapped_column(JSON)
    report_key: Mapped[str | None] = mapped_column(String(400))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Moved by every finished row; the sweeper reads it to tell a slow job from a stuck one.
    last_progress_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ConnectJobRow(Base):
    __tablename__ = "connect_job_rows"
    __table_args__ = (
        UniqueConstraint("job_id", "row_no", name="uq_connect_job_rows_job_row"),
        Index("ix_connect_job_rows_state_lease", "state", "lease_expires_at"),
        # A job's runners take its next pending row in request order.
        Index("ix_connect_job_rows_job_state_row", "job_id", "state", "row_no"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("connect_jobs.id", ondelete="CASCADE"))
    row_no: Mapped[int] = mapped_column(Integer)  # 1-based position in the request
    state: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(320))
    settings: Mapped[dict | None] = mapped_column(JSON)  # normalised, never a password
    credentials: Mapped[str | None] = mapped_column(Text)  # cleared once the row is done
    error_code: Mapped[str | None] = mapped_column(String(64))
    field_errors: Mapped[list | None] = mapped_column(JSON)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    account_id: Mapped[int | None] = mapped_column(BigInteger)
    account_status: Mapped[int | None] = mapped_column(SmallInteger)
    smtp_result: Mapped[str | None] = mapped_column(String(16))
    smtp_error_code: Mapped[str | None] = mapped_column(String(64))
    smtp_error: Mapped[str | None] = mapped_column(Text)
    imap_result: Mapped[str | None] = mapped_column(String(16))
    imap_error_code: Mapped[str | None] = mapped_column(String(64))
    imap_error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
