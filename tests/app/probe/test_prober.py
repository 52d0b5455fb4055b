"""Prober as a whole: both protocols at once, worker threads, never raising, one SSL context."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.credentials import Secret
from app.probe import Encryption, Endpoint, ErrorCode, Prober, ProbeSettings, ProtocolResult
from app.probe.policy import OPEN_POLICY
from tests.app.probe.conftest import LOOPBACK_NETS, PASSWORD, TIMEOUT, USER, endpoint
from tests.servers.faults import scripted_imap, server_tls_context, silent_server
from tests.servers.smtp import SmtpServer

SSL, STARTTLS, NONE = Encryption.SSL, Encryption.STARTTLS, Encryption.NONE


@pytest.fixture(scope="module")
def imap_server(pki):
    with scripted_imap({USER: PASSWORD}, implicit_tls=server_tls_context(pki.good)) as server:
        yield server


def test_nothing_to_probe_is_skipped(prober) -> None:
    account = prober.probe_sync(None, None)
    assert account.smtp == ProtocolResult.skipped() == account.imap
    assert not account.verified


def test_both_protocols_verified(prober, smtp_server: SmtpServer, imap_server) -> None:
    account = prober.probe_sync(
        endpoint(smtp_server.starttls_port, STARTTLS), endpoint(imap_server.port, SSL)
    )
    assert account.smtp.ok and account.imap.ok
    assert account.verified


def test_one_side_failing_is_not_verified(prober, smtp_server: SmtpServer, imap_server) -> None:
    account = prober.probe_sync(
        endpoint(smtp_server.ssl_port, SSL), endpoint(imap_server.port, SSL, password="bad")
    )
    assert account.smtp.ok
    assert account.imap.error_code == ErrorCode.AUTH_FAILED
    assert not account.verified


def test_protocols_run_concurrently(prober) -> None:
    with silent_server() as server:
        started = time.monotonic()
        account = prober.probe_sync(endpoint(server.port, SSL), endpoint(server.port, SSL))
        elapsed = time.monotonic() - started
    assert account.smtp.error_code == account.imap.error_code == ErrorCode.CONNECTION_TIMEOUT
    assert elapsed < TIMEOUT * 1.5  # one deadline, not two in a row
    assert TIMEOUT * 1000 - 100 <= account.duration_ms < TIMEOUT * 1500


def test_starttls_port_refuses_auth_in_the_clear(prober, smtp_server: SmtpServer) -> None:
    result = prober.probe_sync(endpoint(smtp_server.starttls_port, NONE), None).smtp
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED


def test_many_threads_share_one_prober(pki, smtp_server: SmtpServer, imap_server) -> None:
    """The worker's shape: probe_sync from many threads at once on one Prober."""
    prober = Prober(
        ProbeSettings(
            timeout_seconds=10, allow_networks=LOOPBACK_NETS, extra_ca_file=str(pki.ca_file),
            host_policy=OPEN_POLICY,
        )
    )
    accounts = 200

    def one(index: int):
        password = PASSWORD if index % 4 else "wrong"
        return prober.probe_sync(
            endpoint(smtp_server.ssl_port, SSL, password=password),
            endpoint(imap_server.port, SSL, password=password),
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(accounts)))
    elapsed = time.monotonic() - started
    for index, account in enumerate(results):
        if index % 4:
            assert account.verified, account
        else:
            assert account.smtp.error_code == account.imap.error_code == ErrorCode.AUTH_FAILED
    assert elapsed < 30, f"{accounts} accounts took {elapsed:.1f} s"


def test_one_ssl_context_per_prober(probe_settings, smtp_server: SmtpServer, monkeypatch) -> None:
    calls = []
    original = ssl.create_default_context

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    prober = Prober(probe_settings)
    for _ in range(5):
        assert prober.probe_sync(endpoint(smtp_server.ssl_port, SSL), None).smtp.ok
    assert len(calls) == 1


class ExplodingResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        raise RuntimeError(f"boom {PASSWORD}")


def test_unexpected_exception_is_internal_error_and_logs_no_secret(caplog) -> None:
    prober = Prober(ProbeSettings(timeout_seconds=TIMEOUT), resolver=ExplodingResolver())
    with caplog.at_level(logging.ERROR, logger="app.probe"):
        account = prober.probe_sync(endpoint(25, host="mail.example.com"), None)
    assert account.smtp.error_code == ErrorCode.INTERNAL_ERROR
    assert account.smtp.error == "internal error (RuntimeError)"
    assert "RuntimeError" in caplog.text
    assert PASSWORD not in caplog.text


def test_invalid_port_does_not_raise(prober) -> None:
    result = prober.probe_sync(endpoint(0), None).smtp
    assert result.outcome == "failed"


def test_password_never_in_any_result(prober, smtp_server: SmtpServer, imap_server) -> None:
    account = prober.probe_sync(
        endpoint(smtp_server.plain_port, SSL), endpoint(imap_server.port, SSL, password="x")
    )
    assert PASSWORD not in repr(account)
    assert USER  # the endpoint's repr hides the Secret as well
    assert PASSWORD not in repr(endpoint(1))


def test_async_api(prober, smtp_server: SmtpServer, imap_server) -> None:
    async def both() -> tuple[ProtocolResult, ProtocolResult]:
        return await asyncio.gather(
            prober.probe_smtp(endpoint(smtp_server.ssl_port, SSL)),
            prober.probe_imap(endpoint(imap_server.port, SSL)),
        )

    smtp_result, imap_result = asyncio.run(both())
    assert smtp_result.ok and imap_result.ok


def test_malformed_endpoint_does_not_raise(prober) -> None:
    bad = Endpoint(None, 25, SSL, USER, Secret(PASSWORD))  # type: ignore[arg-type]
    result = prober.probe_sync(bad, None).smtp
    assert result.error_code == ErrorCode.INTERNAL_ERROR
