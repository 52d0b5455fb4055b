"""Every setting, read from the environment in one place, with safe defaults."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

from limits import RateLimitItem, parse_many
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.credentials import CredentialCipher
from app.probe.model import IPNetwork, ProbeSettings, ProxyTarget
from app.probe.policy import HostPolicy, parse_banned_hosts, parse_ports
from app.probe.proxy import parse_proxy_url

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration cannot work; the process must not start with it."""


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value may hold a password (PROBE_PROXY_URL, keys).
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore",
                                      hide_input_in_errors=True)

    data_dir: Path = Field(default=Path(".mailconnect"), alias="MAILCONNECT_DATA_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str = Field(default="redis://localhost:6379/0", alias="REDIS_URL")

    s3_endpoint_url: str | None = Field(default=None, alias="S3_ENDPOINT_URL")
    s3_public_endpoint_url: str | None = Field(default=None, alias="S3_PUBLIC_ENDPOINT_URL")
    s3_bucket: str = Field(default="mailconnect-reports", alias="S3_BUCKET")
    aws_region: str = Field(default="us-east-1", alias="AWS_DEFAULT_REGION")
    # Unset: boto3's own chain (instance roles, ~/.aws, ...).
    aws_access_key_id: str | None = Field(default=None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(default=None, alias="AWS_SECRET_ACCESS_KEY")
    report_url_ttl_seconds: int = Field(
        default=3600, ge=60, le=604800, alias="REPORT_URL_TTL_SECONDS"
    )

    credentials_keys: str | None = Field(default=None, alias="CREDENTIALS_KEYS")

    probe_timeout_seconds: float = Field(default=20.0, gt=0, le=300, alias="PROBE_TIMEOUT_SECONDS")
    probe_allow_networks: str = Field(default="", alias="PROBE_ALLOW_NETWORKS")
    probe_extra_ca_file: str | None = Field(default=None, alias="PROBE_EXTRA_CA_FILE")
    # How long a mail host's addresses are reused before it is resolved again; 0: every probe
    # resolves.
    probe_dns_cache_seconds: float = Field(default=60.0, ge=0, le=3600,
                                           alias="PROBE_DNS_CACHE_SECONDS")
    # Comma-separated host names and IP addresses the service refuses outright. A name bans
    # itself and every subdomain; a leading dot changes nothing (`.example.com` is
    # `example.com`, which also bans `mail.example.com` but not `badexample.com`).
    probe_banned_hosts: str = Field(default="", alias="PROBE_BANNED_HOSTS")
    # Comma-separated ports and inclusive ranges the probe may dial, e.g. `25,465,20000-29999`.
    probe_allowed_ports: str = Field(default="25,465,587,2525,143,993",
                                     alias="PROBE_ALLOWED_PORTS")
    probe_local_hostname: str = Field(
        default="mailconnect.localdomain", alias="PROBE_LOCAL_HOSTNAME"
    )
    # The proxy for accounts that give no proxyUrl of their own: socks5://, socks5h:// or
    # http://, with optional user:password. Its address must pass the network policy too
    # (a proxy on a private network needs PROBE_ALLOW_NETWORKS).
    probe_proxy_url: SecretStr | None = Field(default=None, alias="PROBE_PROXY_URL")

    probe_retry_attempts: int = Field(default=3, ge=1, le=10, alias="PROBE_RETRY_ATTEMPTS")
    probe_retry_backoff_seconds: float = Field(
        default=5.0, ge=0, alias="PROBE_RETRY_BACKOFF_SECONDS"
    )
    probe_retry_backoff_max_seconds: float = Field(
        default=120.0, ge=0, alias="PROBE_RETRY_BACKOFF_MAX_SECONDS"
    )
    probe_max_per_host: int = Field(default=20, ge=1, alias="PROBE_MAX_PER_HOST")
    probe_host_limits: str = Field(default="", alias="PROBE_HOST_LIMITS")
    probe_min_connect_interval_ms: int = Field(
        default=0, ge=0, alias="PROBE_MIN_CONNECT_INTERVAL_MS"
    )

    # Logins to mail servers (an account test: SMTP and IMAP, two) per team in any rolling
    # hour. At least 2, or an account could never be tested; no 0 meaning "unlimited".
    team_max_logins_per_hour: int = Field(default=5000, alias="TEAM_MAX_LOGINS_PER_HOUR")
    # The quota's rolling window; an hour. Shorter only for tests and drills.
    team_login_window_seconds: float = Field(default=3600.0, gt=0, le=86400,
                                             alias="TEAM_LOGIN_WINDOW_SECONDS")

    max_accounts_per_request: int = Field(default=10_000, ge=1, alias="MAX_ACCOUNTS_PER_REQUEST")
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, alias="MAX_REQUEST_BYTES")

    worker_concurrency: int = Field(default=100, ge=1, alias="WORKER_CONCURRENCY")
    # The guard that matters is relational (see _timeouts_fit): every lease and retry countdown
    # stays below it. The floor only refuses values no deployment means; tests go as low as a
    # few seconds to make Redis redeliver a running task.
    broker_visibility_timeout: int = Field(default=3600, ge=5, alias="BROKER_VISIBILITY_TIMEOUT")
    row_lease_seconds: int | None = Field(default=None, ge=1, alias="ROW_LEASE_SECONDS")
    job_stall_seconds: int = Field(default=300, ge=1, alias="JOB_STALL_SECONDS")
    sweep_interval_seconds: float = Field(default=30.0, gt=0, alias="SWEEP_INTERVAL_SECONDS")
    job_retention_days: float = Field(default=7, gt=0, alias="JOB_RETENTION_DAYS")

    # Webhooks: each try's timeout, how many tries, and the first backoff (doubled per try).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60,
                                           alias="WEBHOOK_TIMEOUT_SECONDS")
    webhook_max_attempts: int = Field(default=5, ge=1, le=20, alias="WEBHOOK_MAX_ATTEMPTS")
    webhook_backoff_seconds: float = Field(default=10.0, ge=0, le=600,
                                           alias="WEBHOOK_BACKOFF_SECONDS")

    # Requests per API key, counted in Redis across every web process: limits strings such as
    # `60/minute` or `10/second;100/minute` (each part enforced). Polls stay far above the
    # polling benchmark's 50 pollers at one poll each 0.5 s (6,000/minute from one key).
    rate_limits_enabled: bool = Field(default=True, alias="RATE_LIMITS_ENABLED")
    rate_limit_bulk: str = Field(default="60/minute", alias="RATE_LIMIT_BULK")
    rate_limit_single: str = Field(default="60/minute", alias="RATE_LIMIT_SINGLE")
    rate_limit_poll: str = Field(default="30000/minute", alias="RATE_LIMIT_POLL")
    rate_limit_manage: str = Field(default="600/minute", alias="RATE_LIMIT_MANAGE")

    port: int = Field(default=8000, ge=1, le=65535, alias="PORT")
    # Where providers send the browser back after consent (registered with each OAuth app);
    # empty: http://127.0.0.1:$PORT/oauth/callback.
    oauth_callback_url: str = Field(default="", alias="OAUTH_CALLBACK_URL")
    # Scopes asked of a custom provider's consent screen.
    oauth_custom_scope: str = Field(default="openid email", alias="OAUTH_CUSTOM_SCOPE")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    # json: one JSON object per line, for log collectors; text: for people (`mailconnect dev`).
    log_format: Literal["json", "text"] = Field(default="json", alias="LOG_FORMAT")
    # Where the processes of one machine keep their metric values for /metrics to add up
    # (prometheus-client's multiprocess mode); empty: $MAILCONNECT_DATA_DIR/metrics.
    prometheus_multiproc_dir: Path | None = Field(default=None, alias="PROMETHEUS_MULTIPROC_DIR")
    # When set, /metrics wants `Authorization: Bearer <token>`; otherwise it is open, and must
    # only be reachable from the monitoring network.
    metrics_token: SecretStr | None = Field(default=None, alias="METRICS_TOKEN")
    # A Celery worker's own /metrics port, for workers on machines without a web process;
    # 0: none (the web's /metrics already adds up the workers on its machine).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535, alias="WORKER_METRICS_PORT")
    # Each /readyz dependency check gives up after this long.
    readiness_timeout_seconds: float = Field(default=2.0, gt=0, le=30,
                                             alias="READINESS_TIMEOUT_SECONDS")

    @field_validator("probe_allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        _parse_networks(value)
        return value

    @field_validator("probe_banned_hosts")
    @classmethod
    def _banned_hosts_parse(cls, value: str) -> str:
        _setting("PROBE_BANNED_HOSTS", parse_banned_hosts, value)
        return value

    @field_validator("probe_allowed_ports")
    @classmethod
    def _allowed_ports_parse(cls, value: str) -> str:
        _setting("PROBE_ALLOWED_PORTS", parse_ports, value)
        return value

    @field_validator("probe_proxy_url")
    @classmethod
    def _proxy_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            _setting("PROBE_PROXY_URL", parse_proxy_url, value.get_secret_value())
        return value

    @field_validator("team_max_logins_per_hour")
    @classmethod
    def _login_quota_usable(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"TEAM_MAX_LOGINS_PER_HOUR must be at least 2 (got {value}): an account test "
                "makes two logins, SMTP and IMAP, and there is no 0 meaning unlimited")
        return value

    @field_validator("rate_limit_bulk", "rate_limit_single", "rate_limit_poll",
                     "rate_limit_manage")
    @classmethod
    def _rate_limit_parses(cls, value: str, info: ValidationInfo) -> str:
        _setting(info.field_name.upper(), parse_rate_limit, value)  # the env name
        return value

    @field_validator("probe_host_limits")
    @classmethod
    def _host_limits_parse(cls, value: str) -> str:
        _parse_host_limits(value)
        return value

    @model_validator(mode="after")
    def _timeouts_fit(self) -> Settings:
        if self.probe_retry_backoff_max_seconds >= self.broker_visibility_timeout:
            raise ConfigError(
                f"PROBE_RETRY_BACKOFF_MAX_SECONDS ({self.probe_retry_backoff_max_seconds:g}) must "
                f"be below BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout}): a "
                "longer countdown is redelivered by Redis before it is due, in a loop"
            )
        if self.lease_seconds >= self.broker_visibility_timeout:
            raise ConfigError(
                f"ROW_LEASE_SECONDS ({self.lease_seconds}) must be below "
                f"BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout})"
            )
        if self.lease_seconds <= 2 * self.probe_timeout_seconds:
            raise ConfigError(
                f"ROW_LEASE_SECONDS ({self.lease_seconds}) must exceed twice "
                f"PROBE_TIMEOUT_SECONDS ({self.probe_timeout_seconds}), "
                "or healthy probes are re-run"
            )
        return self

    @property
    def lease_seconds(self) -> int:
        """How long a claimed row belongs to its worker before the sweeper may hand it on."""
        if self.row_lease_seconds is not None:
            return self.row_lease_seconds
        return int(self.probe_timeout_seconds * 3 + 30)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return _normalise_db_url(self.database_url)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'mailconnect.db').resolve()}"

    @property
    def metrics_dir(self) -> Path:
        """Where this machine's processes keep metric values (multiprocess mode)."""
        return (self.prometheus_multiproc_dir or self.data_dir / "metrics").resolve()

    @cached_property
    def allow_networks(self) -> tuple[IPNetwork, ...]:
        return _parse_networks(self.probe_allow_networks)

    @cached_property
    def host_limits(self) -> dict[str, int]:
        return _parse_host_limits(self.probe_host_limits)

    @cached_property
    def host_policy(self) -> HostPolicy:
        """Banned hosts and allowed ports: for validating rows, and for the probe."""
        return HostPolicy(banned_hosts=parse_banned_hosts(self.probe_banned_hosts),
                          allowed_ports=parse_ports(self.probe_allowed_ports))

    @property
    def oauth_callback(self) -> str:
        """This service's OAuth2 callback URL, as providers must be told it."""
        return self.oauth_callback_url or f"http://127.0.0.1:{self.port}/oauth/callback"

    @property
    def rate_limits(self) -> dict[str, str]:
        """Each rate-limit category's limits string, by category name."""
        return {"bulk": self.rate_limit_bulk, "single": self.rate_limit_single,
                "poll": self.rate_limit_poll, "manage": self.rate_limit_manage}

    def probe_settings(self) -> ProbeSettings:
        return ProbeSettings(
            timeout_seconds=self.probe_timeout_seconds,
            allow_networks=self.allow_networks,
            host_policy=self.host_policy,
            extra_ca_file=self.probe_extra_ca_file,
            local_hostname=self.probe_local_hostname,
            default_proxy=self.default_proxy,
        )

    @cached_property
    def default_proxy(self) -> ProxyTarget | None:
        url = self.probe_proxy_url.get_secret_value().strip() if self.probe_proxy_url else ""
        return parse_proxy_url(url) if url else None

    def credential_cipher(self) -> CredentialCipher:
        if self.credentials_keys:
            keys = [k.strip() for k in self.credentials_keys.split(",") if k.strip()]
            try:
                return CredentialCipher(keys)
            except ValueError as exc:
                raise ConfigError(f"CREDENTIALS_KEYS is not a list of Fernet keys: {exc}") from None
        return CredentialCipher([self._development_key()])

    def _development_key(self) -> str:
        # Web, worker and beat on one machine must share the key, so it lives in the data dir.
        key_file = self.data_dir / "credentials.key"
        if not key_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(CredentialCipher.generate_key())
        log.warning(
            "CREDENTIALS_KEYS is not set: using the development key in %s. "
            "Set CREDENTIALS_KEYS in production.",
            key_file,
        )
        return key_file.read_text().strip()


def _parse_networks(value: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in value.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"PROBE_ALLOW_NETWORKS: {part.strip()!r} is not a CIDR") from None
    return tuple(networks)


def _setting(name: str, parse: Callable[[str], object], value: str) -> None:
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def parse_rate_limit(value: str) -> list[RateLimitItem]:
    """A limits string (`60/minute`, `10/second;100/minute`), each part allowing at least one."""
    items = parse_many(value)
    for item in items:
        if item.amount < 1:
            raise ValueError(f"{value.strip()!r} allows no request at all; set "
                             "RATE_LIMITS_ENABLED=false to turn limits off, not a zero limit")
    return items


def _parse_host_limits(value: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        host, sep, number = part.partition("=")
        if not sep or not host.strip() or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(
                f"PROBE_HOST_LIMITS: {part.strip()!r} is not host=N (N a whole number >= 1)"
            )
        limits[host.strip().lower()] = int(number)
    return limits


def _normalise_db_url(url: str) -> str:
    # Platforms hand out postgres:// URLs; SQLAlchemy wants an explicit driver.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load_settings(**overrides: object) -> Settings:
    """Read the environment; overrides (by env-var name) are for tests and `mailconnect dev`."""
    try:
        return Settings(**overrides)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
