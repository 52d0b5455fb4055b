import csv
import io
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from sqlalchemy import select

from app.accounts.autoconfig import (
    AUTOCONFIG,
    SRV,
    AutoconfigFetcher,
    Autodiscovery,
    Discovered,
    Server,
    parse_autoconfig,
    srv_servers,
)
from app.accounts.detect import SrvRecord
from app.config import load_settings
from app.importing.rows import complete_detected, validate_row
from app.jobs.finish import finish_job
from app.jobs.hostgate import OpenGate
from app.jobs.runner import RetryPolicy, RowProcessor, start_job
from app.jobs.status import job_view
from app.models import ConnectJobRow, EmailAccount
from app.outbound import OutboundError
from app.probe.model import Encryption
from app.probe.policy import HostPolicy, parse_banned_hosts
from tests.app.accounts.test_detect import FakeMx, hostless_row
from tests.app.jobs.test_runner import submit, team_id  # noqa: F401 (a fixture)
from tests.app.test_outbound import LOOPBACK, http_server, resolving


class FakeSrv:
    def __init__(self, records: dict[str, list[SrvRecord]]) -> None:
        self.records = records
        self.calls: list[str] = []

    def srv_records(self, name: str) -> list[SrvRecord]:
        self.calls.append(name)
        return self.records.get(name, [])


NOT_OFFERED = [SrvRecord(0, 0, 0, "")]  # "." (RFC 2782)


def config_xml(*servers: str) -> bytes:
    return ("<?xml version='1.0'?><clientConfig version='1.1'><emailProvider id='example.org'>"
            "<domain>example.org</domain>" + "".join(servers)
            + "</emailProvider></clientConfig>").encode()


def server_xml(tag: str, kind: str, host: str, port: int, socket_type: str,
               username: str = "%EMAILADDRESS%", auth: str = "password-cleartext") -> str:
    return (f"<{tag} type='{kind}'><hostname>{host}</hostname><port>{port}</port>"
            f"<socketType>{socket_type}</socketType><username>{username}</username>"
            f"<authentication>{auth}</authentication></{tag}>")


IMAP_SSL = server_xml("incomingServer", "imap", "imap.example.org", 993, "SSL")
SMTP_STARTTLS = server_xml("outgoingServer", "smtp", "smtp.example.org", 587, "STARTTLS")


# SRV records

def test_srv_lowest_priority_then_highest_weight_and_implicit_tls_on_a_tie():
    dns = FakeSrv({
        "_submission._tcp.example.org": [SrvRecord(0, 10, 587, "low.example.org")],
        "_submissions._tcp.example.org": [SrvRecord(0, 10, 465, "tls.example.org"),
                                          SrvRecord(5, 0, 465, "later.example.org")],
        "_imap._tcp.example.org": [SrvRecord(10, 1, 143, "light.example.org"),
                                   SrvRecord(10, 50, 143, "heavy.example.org")],
        "_imaps._tcp.example.org": [SrvRecord(20, 0, 993, "backup.example.org")],
    })
    found = srv_servers("example.org", dns)
    assert found == {"smtp": Server("tls.example.org", 465, Encryption.SSL, SRV),
                     "imap": Server("heavy.example.org", 143, Encryption.STARTTLS, SRV)}


def test_srv_dot_means_not_offered():
    dns = FakeSrv({
        "_submissions._tcp.example.org": NOT_OFFERED,
        "_submission._tcp.example.org": [SrvRecord(0, 0, 587, "mail.example.org")],
        "_imaps._tcp.example.org": NOT_OFFERED,
        "_imap._tcp.example.org": NOT_OFFERED,
    })
    assert srv_servers("example.org", dns) == {
        "smtp": Server("mail.example.org", 587, Encryption.STARTTLS, SRV)}


def test_srv_skips_what_the_host_policy_refuses():
    dns = FakeSrv({"_submissions._tcp.example.org": [
        SrvRecord(0, 0, 465, "banned.example.net"), SrvRecord(1, 0, 4465, "odd.example.org"),
        SrvRecord(2, 0, 465, "ok.example.org")]})
    policy = HostPolicy(banned_hosts=parse_banned_hosts("example.net"))
    assert srv_servers("example.org", dns, policy)["smtp"].host == "ok.example.org"


# Autoconfig files

def test_autoconfig_takes_the_first_usable_server_of_each_protocol():
    xml = config_xml(
        server_xml("incomingServer", "pop3", "pop.example.org", 995, "SSL"),
        server_xml("incomingServer", "imap", "plain.example.org", 143, "plain"),
        server_xml("incomingServer", "imap", "oauth.example.org", 993, "SSL", auth="OAuth2"),
        server_xml("incomingServer", "imap", "imap.%EMAILDOMAIN%", 993, "SSL",
                   username="%EMAILLOCALPART%"),
        SMTP_STARTTLS)
    found = parse_autoconfig(xml, "example.org")
    assert found == {
        "imap": Server("imap.example.org", 993, Encryption.SSL, AUTOCONFIG, "%EMAILLOCALPART%"),
        "smtp": Server("smtp.example.org", 587, Encryption.STARTTLS, AUTOCONFIG,
                       "%EMAILADDRESS%")}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<clientConfig><emailProvider><incomingServer type="imap"><hostname>&lol3;</hostname>
</incomingServer></emailProvider></clientConfig>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><clientConfig>&x;</clientConfig>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<html>not xml",
                                 b"<other><emailProvider/></other>"])
def test_hostile_or_foreign_files_are_refused(xml):
    with pytest.raises(ValueError):
        parse_autoconfig(xml, "example.org")


def test_filling_records_each_value_and_its_source_and_substitutes_the_user_name():
    settings = complete_detected(hostless_settings("bob@example.org"), FakeMx({}))
    assert isinstance(settings, list), "MX alone does not know the domain"
    found = Discovered(
        smtp=Server("mail.example.org", 587, Encryption.STARTTLS, SRV),
        imap=Server("imap.example.org", 993, Encryption.SSL, AUTOCONFIG, "%EMAILLOCALPART%"))
    completed = complete_detected(hostless_settings("bob@example.org"), FakeMx({}),
                                  StaticDiscoverer(found))
    assert completed["filled"] == [
        "smtpHost=mail.example.org (srv)", "smtpPort=587 (srv)", "smtpEncryption=starttls (srv)",
        "imapHost=imap.example.org (autoconfig)", "imapPort=993 (autoconfig)",
        "imapEncryption=ssl (autoconfig)", "imapUserName=bob (autoconfig)"]
    assert (completed["smtp"]["username"], completed["imap"]["username"]) == (
        "bob@example.org", "bob")
    assert "detectProvider" not in completed


def test_a_user_name_the_row_gave_is_kept():
    settings = hostless_settings("bob@example.org", imapUserName="robert")
    found = Discovered(imap=Server("imap.example.org", 993, Encryption.SSL, AUTOCONFIG,
                                   "%EMAILLOCALPART%"),
                       smtp=Server("mail.example.org", 465, Encryption.SSL, SRV))
    completed = complete_detected(settings, FakeMx({}), StaticDiscoverer(found))
    assert completed["imap"]["username"] == "robert"


def test_a_protocol_nothing_found_makes_the_row_invalid():
    found = Discovered(smtp=Server("mail.example.org", 465, Encryption.SSL, SRV))
    errors = complete_detected(hostless_settings("bob@example.org"), FakeMx({}),
                               StaticDiscoverer(found))
    assert [(e.field, "autoconfig" in e.message) for e in errors] == [("imapHost", True)]
    errors = complete_detected(hostless_settings("bob@example.org"), FakeMx({}),
                               StaticDiscoverer(None))
    assert errors[0].field == "smtpHost" and "SRV records" in errors[0].message


class StaticDiscoverer:
    def __init__(self, found: Discovered | None) -> None:
        self.found = found

    def discover(self, email: str) -> Discovered | None:
        return self.found


def hostless_settings(email: str, **overrides) -> dict:
    return validate_row(hostless_row(email, **overrides), defer_detection=True).settings()


# Fetching, through the outbound policy, from a real local HTTP server

def serving(routes: dict[str, tuple[int, bytes, dict[str, str]]], seen: list[tuple[str, str]]):
    def handle(handler: BaseHTTPRequestHandler) -> None:
        seen.append((handler.headers["Host"].split(":")[0], handler.path))
        status, body, headers = routes.get(handler.path, (404, b"", {}))
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return handle


WELL_KNOWN = "/.well-known/autoconfig/mail/config-v1.1.xml"
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"


def fetcher(port: int, table: dict[str, list[str]], **options) -> AutoconfigFetcher:
    # https goes to a port nothing listens on: refused at once, as Thunderbird then tries http.
    closed = http_server_closed_port()
    options = {"allow": LOOPBACK, **options}
    return AutoconfigFetcher(resolve=resolving(table), http_port=port, https_port=closed,
                             **options)


def http_server_closed_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_https_first_then_http_the_autoconfig_host_before_the_well_known_path():
    assert AutoconfigFetcher().urls("example.org") == [
        "https://autoconfig.example.org:443/mail/config-v1.1.xml",
        f"https://example.org:443{WELL_KNOWN}",
        "http://autoconfig.example.org:80/mail/config-v1.1.xml",
        f"http://example.org:80{WELL_KNOWN}"]


def test_the_well_known_file_is_fetched_when_autoconfig_host_does_not_exist():
    seen: list = []
    xml = config_xml(IMAP_SSL, SMTP_STARTTLS)
    with http_server(serving({WELL_KNOWN: (200, xml, {})}, seen)) as port:
        got = fetcher(port, {"example.org": ["127.0.0.1"]}).fetch("example.org")
    assert got == xml
    assert seen == [("example.org", WELL_KNOWN)]


# Only 127.0.0.1 is allowed: 127.0.0.2 stands for a private address that really answers, so a
# missing policy check would show as a request it received.
ONLY_ONE = load_settings(PROBE_ALLOW_NETWORKS="127.0.0.1/32").allow_networks


def test_a_redirect_is_followed_only_to_a_host_the_policy_allows():
    seen: list = []
    inside: list = []
    xml = config_xml(IMAP_SSL)
    table = {"autoconfig.example.org": ["127.0.0.1"], "example.org": ["127.0.0.1"],
             "inside.example.org": ["127.0.0.2"]}
    with http_server(serving({"/x": (200, xml, {})}, inside), host="127.0.0.2") as other:
        routes = {AUTOCONFIG_PATH: (302, b"", {"Location": f"http://inside.example.org:{other}/x"}),
                  WELL_KNOWN: (301, b"", {"Location": "/moved"}), "/moved": (200, xml, {})}
        with http_server(serving(routes, seen)) as port:
            got = fetcher(port, table, allow=ONLY_ONE).fetch("example.org")
    # The private address was refused without a connection; the same-host redirect followed.
    assert got == xml and inside == []
    assert seen == [("autoconfig.example.org", AUTOCONFIG_PATH), ("example.org", WELL_KNOWN),
                    ("example.org", "/moved")]


def test_a_domain_at_a_non_public_address_is_never_fetched():
    seen: list = []
    with http_server(serving({WELL_KNOWN: (200, config_xml(IMAP_SSL), {})}, seen)) as port:
        table = {"example.org": ["127.0.0.1"], "autoconfig.example.org": ["169.254.169.254"]}
        assert fetcher(port, table, allow=()).fetch("example.org") is None
        assert fetcher(port, table).fetch("example.org") is not None, "allow-listed: fetched"
    assert len(seen) == 1


def test_a_redirect_never_goes_from_https_down_to_http():
    with pytest.raises(OutboundError, match="redirect from https"):
        AutoconfigFetcher._follow(f"https://example.org{WELL_KNOWN}",
                                  f"http://example.org{WELL_KNOWN}")
    assert AutoconfigFetcher._follow("http://example.org/a", "https://example.org/b") == (
        "https://example.org/b")


def test_a_file_over_the_size_cap_is_refused():
    seen: list = []
    routes = {AUTOCONFIG_PATH: (200, b" " * 2000 + config_xml(IMAP_SSL), {})}
    with http_server(serving(routes, seen)) as port:
        table = {"autoconfig.example.org": ["127.0.0.1"]}
        assert fetcher(port, table, max_bytes=1000).fetch("example.org") is None
        assert fetcher(port, table).fetch("example.org") is not None


def test_discovery_asks_srv_first_and_the_file_for_what_srv_lacks_once_per_domain():
    seen: list = []
    dns = FakeSrv({"_submissions._tcp.example.org": [SrvRecord(0, 0, 465, "mx.example.org")]})
    xml = config_xml(IMAP_SSL, SMTP_STARTTLS)
    with http_server(serving({AUTOCONFIG_PATH: (200, xml, {})}, seen)) as port:
        discovery = Autodiscovery(dns, fetcher(port, {"autoconfig.example.org": ["127.0.0.1"]}))
        first = discovery.discover("a@example.org")
        assert discovery.discover("b@EXAMPLE.org") == first
    assert first == Discovered(
        smtp=Server("mx.example.org", 465, Encryption.SSL, SRV),
        imap=Server("imap.example.org", 993, Encryption.SSL, AUTOCONFIG, "%EMAILADDRESS%"))
    assert len(seen) == 1 and len(dns.calls) == 4


def test_hostile_xml_served_is_no_discovery():
    seen: list = []
    with http_server(serving({AUTOCONFIG_PATH: (200, BILLION_LAUGHS, {})}, seen)) as port:
        discovery = Autodiscovery(FakeSrv({}),
                                  fetcher(port, {"autoconfig.example.org": ["127.0.0.1"]}))
        assert discovery.discover("a@example.org") is None


# A job row that autodiscovers its servers, then connects to the real Dovecot.

def test_a_job_row_autodiscovers_its_servers_and_connects(services, team_id,  # noqa: F811
                                                          mail_server):
    dns = FakeSrv({
        "_submissions._tcp.example.test": NOT_OFFERED,
        "_submission._tcp.example.test": [
            SrvRecord(0, 0, mail_server.submission_port, "localhost.")],
    })
    seen: list = []
    imap = server_xml("incomingServer", "imap", "localhost", mail_server.imaps_port, "SSL")
    with http_server(serving({AUTOCONFIG_PATH: (200, config_xml(imap), {})}, seen)) as port:
        discovery = Autodiscovery(dns, fetcher(port, {"autoconfig.example.test": ["127.0.0.1"]}),
                                  services.settings.host_policy)
        job = submit(services, team_id, [
            hostless_row("alice@example.test", smtpPassword="alice-Pa55!", imapPassword=None,
                         imapUserName=None)])
        rows = RowProcessor(db=services.db, clock=services.clock, cipher=services.cipher,
                            prober=services.prober, gate=OpenGate(), policy=RetryPolicy(),
                            lease_seconds=60, mx_for_job=lambda _job: FakeMx({}),
                            discoverer_for_job=lambda _job: discovery)
        (row_id,) = start_job(services.db, services.clock, job.job_id)
        assert rows.process(row_id).job_finished
    with services.db.transaction() as session:
        stored = session.scalars(select(EmailAccount)).one()
        row = session.get(ConnectJobRow, row_id)
        assert (row.smtp_error_code, row.imap_error_code) == (None, None)
        assert (stored.status, stored.smtp_host, stored.smtp_port, stored.imap_port) == (
            1, "localhost", mail_server.submission_port, mail_server.imaps_port)
    assert finish_job(services.db, services.clock, services.store, job.job_id)
    view = job_view(services.db, team_id, job.job_id)
    report = list(csv.DictReader(io.StringIO(requests.get(
        services.store.download_url(view.report_key, 60), timeout=10).text)))
    assert report[0]["status"] == "connected"
    assert report[0]["filledIn"] == (
        f"smtpHost=localhost (srv), smtpPort={mail_server.submission_port} (srv), "
        "smtpEncryption=starttls (srv), imapHost=localhost (autoconfig), "
        f"imapPort={mail_server.imaps_port} (autoconfig), imapEncryption=ssl (autoconfig)")
