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
    CANCELLED = "cancelled"


# A job in one of these states is over: isCompleted is true and nothing changes it any more.
TERMINAL_JOB_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class RowState(StrEnum):
    PENDING = "pending"  # ready for any runner
    TESTING = "testing"  # claimed; lease_expires_at says until when it belongs to its worker
    WAITING = "waiting"  # set aside until wait_until: a busy host or a transient-failure retry
    DONE = "done"
    INVALID = "invalid"
    CANCELLED = "cancelled"  # never tested: its job was cancelled first


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Webhooks: the default callback URL of the team's jobs, and the HMAC secret that signs
    # deliveries (a CredentialCipher token, never plain text).
    callback_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Written at most about once a minute per key and web process, never once per request.
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # A revoked key is kept (list shows it) but no longer authenticates.
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class OAuthApp(Base):
    """A team's own OAuth application at one provider: what refreshes its mailboxes' tokens."""

    __tablename__ = "oauth_apps"
    __table_args__ = (UniqueConstraint("team_id", "provider", name="uq_oauth_apps_team_provider"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # google, microsoft or custom
    client_id: Mapped[str] = mapped_column(String(512))
    client_secret: Mapped[str] = mapped_column(Text)  # a CredentialCipher token
    tenant: Mapped[str | None] = mapped_column(String(200))
    token_url: Mapped[str] = mapped_column(Text)
    authorize_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OAuthConsent(Base):
    """A browser consent under way: the state a callback must bring back, once, in time."""

    __tablename__ = "oauth_consents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # SHA-256 of the state: the table alone cannot be replayed at the callback.
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(320))
    redirect_url: Mapped[str] = mapped_column(Text)
    server: Mapped[dict | None] = mapped_column(JSON)  # the row's server fields, no secret
    code_verifier: Mapped[str] = mapped_column(Text)  # a CredentialCipher token
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


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
    # "password", or "oauth2": then `credentials` holds the OAuth tokens, and the team's OAuth
    # app of `oauth2_provider` refreshes them.
    auth_type: Mapped[str] = mapped_column(String(16), default="password",
                                           server_default="password")
    oauth2_provider: Mapped[str | None] = mapped_column(String(16))
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

    # Bumped by every change of a connection setting or credential: a test result is written
    # only over the settings version it tested.
    settings_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # When the settings it holds were submitted (a job's POST, a single connect's request, a
    # PATCH): a submission older than that never overwrites them, however late it finishes.
    # Null for accounts saved before this was kept.
    settings_submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
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


class AccountDeletion(Base):
    """When a team's account was last deleted: a connect submitted before then (a bulk row
    still waiting for its test, a single connect mid-test) must not bring it back."""

    __tablename__ = "account_deletions"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    deleted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class ConnectJob(Base):
    __tablename__ = "connect_jobs"
    __table_args__ = (
        Index("ix_connect_jobs_status", "status"),
        # A team's jobs, newest first.
        Index("ix_connect_jobs_team_created", "team_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the public requestId
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    # connect (a submitted batch), reconnect (stored accounts), retry (a job's failed rows)
    kind: Mapped[str] = mapped_column(String(16), default="connect", server_default="connect")
    retry_of: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ignored_columns: Mapped[list[str] | None] = mapped_column(JSON)
    report_key: Mapped[str | None] = mapped_column(String(400))
    failed_rows_key: Mapped[str | None] = mapped_column(String(400))
    # Set when retention deleted the report files: the status then says they expired.
    files_expired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    callback_url: Mapped[str | None] = mapped_column(Text)
    # pending, delivered or failed; attempts and the last error are kept for the status.
    webhook_state: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_error: Mapped[str | None] = mapped_column(Text)
    webhook_delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Set while the team's login quota holds the job's rows back: until when (the status's
    # `waiting`). A row let through by the quota after it clears it and resumes the job.
    quota_wait_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Moved by every finished row; the sweeper reads it to tell a slow job from a stuck one.
    last_progress_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ConnectJobRow(Base):
    __tablename__ = "connect_job_rows"
    __table_args__ = (
        UniqueConstraint("job_id", "row_no", name="uq_connect_job_rows_job_row"),
        Index("ix_connect_job_rows_state_lease", "state", "lease_expires_at"),
        Index("ix_connect_job_rows_state_wait", "state", "wait_until"),
        # A job's runners take its next pending row in request order.
        Index("ix_connect_job_rows_job_state_row", "job_id", "state", "row_no"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("connect_jobs.id", ondelete="CASCADE"))
    row_no: Mapped[int] = mapped_column(Integer)  # 1-based position in the request
    state: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(320))
    # A connect row carries its settings and credentials; a re-test row (reconnect, retry)
    # carries neither, only account_id, and tests the account as it is when its probe starts.
    settings: Mapped[dict | None] = mapped_column(JSON)  # normalised, never a password
    credentials: Mapped[str | None] = mapped_column(Text)  # cleared once the row is done
    # An invalid row's fields as submitted (canonical names, passwords left out), for the
    # failed-rows file a user fixes and resubmits.
    source: Mapped[dict | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    field_errors: Mapped[list | None] = mapped_column(JSON)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # testing only
    wait_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # waiting only
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # tests tried (retries included)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # times taken

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


class JobErrorCount(Base):
    """Failed rows per error code, kept by the result writes so a poll never scans rows."""

    __tablename__ = "job_error_counts"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("connect_jobs.id", ondelete="CASCADE"), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class IdempotencyKey(Base):
    """A bulk request's Idempotency-Key: the same key and body get the same job for 24 hours."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("team_id", "key", name="uq_idempotency_keys_team_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("connect_jobs.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
