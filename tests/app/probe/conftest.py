"""Shared fixtures for the probe tests: test PKI, settings that trust it, a Prober."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from app.credentials import Secret
from app.probe import Encryption, Endpoint, Prober, ProbeSettings
from app.probe.policy import OPEN_POLICY
from tests.servers.smtp import SmtpServer, start_smtp_server
from tests.servers.tls import TestPKI

# Short on purpose: every timing assertion below is a bound well inside it.
TIMEOUT = 3.0
USER = "user@example.com"
PASSWORD = "s3cr3t-Pa$$word"
LOOPBACK_NETS = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


@pytest.fixture(scope="session")
def probe_settings(pki: TestPKI) -> ProbeSettings:
    return ProbeSettings(
        timeout_seconds=TIMEOUT, allow_networks=LOOPBACK_NETS, extra_ca_file=str(pki.ca_file),
        host_policy=OPEN_POLICY,
    )


@pytest.fixture(scope="session")
def prober(probe_settings: ProbeSettings) -> Prober:
    return Prober(probe_settings)


@pytest.fixture(scope="session")
def smtp_server(pki: TestPKI) -> SmtpServer:
    with start_smtp_server(pki, {USER: PASSWORD}) as server:
        yield server


def endpoint(
    port: int,
    encryption: Encryption = Encryption.STARTTLS,
    *,
    host: str = "localhost",
    username: str = USER,
    password: str = PASSWORD,
) -> Endpoint:
    return Endpoint(host, port, encryption, username, Secret(password))
