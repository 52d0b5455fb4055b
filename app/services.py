"""The process-wide objects every adapter needs, wired once from Settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from app.accounts.detect import DnsMxResolver, MxResolver
from app.clock import Clock, SystemClock
from app.config import Settings
from app.credentials import CredentialCipher
from app.db import Database
from app.jobs.hostgate import HostGate, RedisHostGate
from app.jobs.loginquota import LoginQuota, RedisLoginQuota
from app.oauth.flights import RedisFlights
from app.oauth.tokens import TOKEN_ENDPOINT_TIMEOUT, TokenRefresher
from app.probe import Prober
from app.probe.network import CachingResolver, Resolver, SystemResolver
from app.storage import ReportStore, s3_report_store


@dataclass
class Services:
    settings: Settings
    db: Database
    cipher: CredentialCipher
    store: ReportStore
    prober: Prober
    # The per-host caps on concurrent probes, shared by job runners and single-account calls.
    gate: HostGate
    # Each team's logins to mail servers per rolling hour, shared the same way.
    login_quota: LoginQuota
    clock: Clock = field(default_factory=SystemClock)
    # One resolver (and so one MX cache) per request or job: answers must not go stale.
    mx_resolvers: Callable[[], MxResolver] = DnsMxResolver
    # Refreshes OAuth2 accounts' access tokens before a probe (None: used as stored).
    tokens: TokenRefresher | None = None


def build_host_gate(settings: Settings) -> RedisHostGate:
    """The one way the gate is built, so web requests and workers keep the same caps."""
    return RedisHostGate(
        redis.Redis.from_url(settings.redis_url),
        max_per_host=settings.probe_max_per_host,
        host_limits=settings.host_limits,
        # A slot is held for one probe: both protocols run side by side.
        lease_seconds=settings.probe_timeout_seconds + 10,
        min_interval_ms=settings.probe_min_connect_interval_ms,
        # Waiting lists outlive any row's wait; wait_until is the net.
        waiting_ttl_seconds=settings.broker_visibility_timeout,
    )


def build_resolver(settings: Settings) -> Resolver:
    resolver = SystemResolver()
    if settings.probe_dns_cache_seconds <= 0:
        return resolver
    return CachingResolver(resolver, settings.probe_dns_cache_seconds)


def build_login_quota(settings: Settings) -> RedisLoginQuota:
    return RedisLoginQuota(redis.Redis.from_url(settings.redis_url),
                           limit=settings.team_max_logins_per_hour,
                           window_seconds=settings.team_login_window_seconds)


def build_services(settings: Settings, store: ReportStore | None = None,
                   clock: Clock | None = None, gate: HostGate | None = None) -> Services:
    db, cipher, clock = Database(settings.sqlalchemy_url), settings.credential_cipher(), \
        clock or SystemClock()
    return Services(
        settings=settings,
        db=db,
        cipher=cipher,
        store=store or s3_report_store(settings),
        prober=Prober(settings.probe_settings(), resolver=build_resolver(settings)),
        gate=gate or build_host_gate(settings),
        login_quota=build_login_quota(settings),
        clock=clock,
        # The token endpoint passes the same outbound policy as the mail servers.
        tokens=TokenRefresher(db, cipher, clock, allow_networks=settings.allow_networks,
                              flights=build_refresh_flights(settings, cipher)),
    )


def build_refresh_flights(settings: Settings, cipher: CredentialCipher) -> RedisFlights:
    # A waiter gives up after one refresh's whole time and a margin.
    return RedisFlights(redis.Redis.from_url(settings.redis_url), cipher,
                        wait_seconds=TOKEN_ENDPOINT_TIMEOUT + 5)
