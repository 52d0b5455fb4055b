import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from app.accounts.detect import DnsMxResolver, detect_provider, provider_of_mx
from app.importing.rows import AccountInput, validate_row
from tests.factories import bulk_row

UNRECOGNISED = ("is required (the provider of example.com could not be recognised from its "
                "MX records)")


class FakeMx:
    def __init__(self, hosts_by_domain: dict[str, list[str]]) -> None:
        self.hosts_by_domain = hosts_by_domain
        self.calls: list[str] = []

    def mx_hosts(self, domain: str) -> list[str]:
        self.calls.append(domain)
        return self.hosts_by_domain.get(domain, [])


def hostless_row(email: str = "sarah@example.com", **overrides) -> dict:
    fields = ("emailServiceProvider", "smtpHost", "smtpPort", "smtpEncryption", "imapHost",
              "imapPort", "imapEncryption")
    return bulk_row(email, **{**dict.fromkeys(fields), **overrides})


FAMILIES = [
    ("aspmx.l.google.com", "gsuite", "smtp.gmail.com"),
    ("alt1.aspmx.l.google.com", "gsuite", "smtp.gmail.com"),
    ("smtp.google.com", "gsuite", "smtp.gmail.com"),
    ("aspmx2.googlemail.com", "gsuite", "smtp.gmail.com"),
    ("example-com.mail.protection.outlook.com", "microsoft", "smtp.office365.com"),
    ("mx.zoho.com", "zoho", "smtp.zoho.com"),
    ("mx2.zoho.eu", "zoho", "smtp.zoho.com"),
    ("mx3.zoho.in", "zoho", "smtp.zoho.com"),
    ("mx.zoho.com.au", "zoho", "smtp.zoho.com"),
    ("mta5.am0.yahoodns.net", "yahoo", "smtp.mail.yahoo.com"),
    ("mx.yandex.net", "yandex", "smtp.yandex.com"),
    ("mx.yandex.ru", "yandex", "smtp.yandex.com"),
    ("mx.yandex.com", "yandex", "smtp.yandex.com"),
    ("mailstore1.secureserver.net", "godaddy", "smtpout.secureserver.net"),
]


@pytest.mark.parametrize(("mx_host", "provider", "smtp_host"), FAMILIES)
def test_each_provider_family_is_detected_and_its_preset_filled(mx_host, provider, smtp_host):
    result = validate_row(hostless_row(), mx=FakeMx({"example.com": [mx_host]}))
    assert isinstance(result, AccountInput), result
    assert (result.provider, result.smtp.host) == (provider, smtp_host)
    assert result.filled == ("emailServiceProvider", "smtpHost", "smtpPort", "smtpEncryption",
                             "imapHost", "imapPort", "imapEncryption")
    assert result.settings()["filled"][0] == "emailServiceProvider"


@pytest.mark.parametrize("host", ["notgoogle.com", "google.com.evil.example", "mx.example.com",
                                  "mail.protection.outlook.com.example", "zoho.company.com"])
def test_lookalike_hosts_are_not_recognised(host):
    assert provider_of_mx(host) is None


def test_the_most_preferred_recognised_host_decides():
    mx = FakeMx({"example.com": ["filter.example.net", "example-com.mail.protection.outlook.com",
                                 "aspmx.l.google.com"]})
    assert detect_provider("example.com", mx) == "microsoft"


def test_detection_keeps_what_the_row_gave():
    result = validate_row(hostless_row(imapHost="imap.example.com", smtpPort=587),
                          mx=FakeMx({"example.com": ["aspmx.l.google.com"]}))
    assert (result.smtp.host, result.smtp.port, result.imap.host) == (
        "smtp.gmail.com", 587, "imap.example.com")
    assert result.filled == ("emailServiceProvider", "smtpHost", "imapPort", "imapEncryption")


@pytest.mark.parametrize("hosts", [["mx.example.com"], []])  # unknown host, or DNS failed
def test_unrecognised_domain_makes_the_row_invalid(hosts):
    result = validate_row(hostless_row(), mx=FakeMx({"example.com": hosts}))
    assert isinstance(result, list)
    assert {e.field: e.message for e in result}["smtpHost"] == UNRECOGNISED


def test_without_a_resolver_a_missing_host_is_simply_required():
    raw = hostless_row(smtpPort=587, imapHost="imap.example.com", imapPort=993)
    errors = {e.field: e.message for e in validate_row(raw)}
    assert errors == {"smtpHost": "is required"}


@pytest.mark.parametrize("overrides", [
    {"smtpHost": "smtp.example.com"},  # the row names its server
    {"emailServiceProvider": "custom"},  # or says it has its own
    {"emailServiceProvider": "gmail"},  # or its provider has a preset
])
def test_dns_is_only_asked_about_rows_with_no_host_and_no_provider(overrides):
    mx = FakeMx({"example.com": ["aspmx.l.google.com"]})
    validate_row(hostless_row(**overrides), mx=mx)
    assert mx.calls == []


def test_the_email_domain_is_looked_up():
    mx = FakeMx({"acme.io": ["aspmx.l.google.com"]})
    assert validate_row(hostless_row("Bob@ACME.io"), mx=mx).provider == "gsuite"
    assert mx.calls == ["acme.io"]


# The real resolver, with dnspython's lookup stubbed: tests never touch the network.

def mx_record(text: str):
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.MX, text)


@pytest.fixture
def dns_answers(monkeypatch):
    answers: dict[str, object] = {}
    calls: list[tuple[str, str]] = []

    def resolve(self, qname, rdtype, **kwargs):
        calls.append((qname, rdtype))
        answer = answers[qname]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", resolve)
    return answers, calls


def test_dns_resolver_sorts_by_preference_and_caches(dns_answers):
    answers, calls = dns_answers
    answers["example.com"] = [mx_record("20 ALT1.ASPMX.L.GOOGLE.COM."),
                              mx_record("10 aspmx.l.google.com.")]
    resolver = DnsMxResolver()
    expected = ["aspmx.l.google.com", "alt1.aspmx.l.google.com"]
    assert resolver.mx_hosts("example.com") == expected
    assert resolver.mx_hosts("Example.COM") == expected
    assert calls == [("example.com", "MX")]


@pytest.mark.parametrize("failure", [dns.resolver.NXDOMAIN(), dns.resolver.NoAnswer(),
                                     dns.resolver.LifetimeTimeout(timeout=2.0, errors={})])
def test_dns_failures_are_empty_and_cached(dns_answers, failure):
    answers, calls = dns_answers
    answers["gone.example"] = failure
    resolver = DnsMxResolver()
    assert resolver.mx_hosts("gone.example") == []
    assert resolver.mx_hosts("gone.example") == []
    assert len(calls) == 1


def test_null_mx_means_no_hosts(dns_answers):
    answers, _ = dns_answers
    answers["nomail.example"] = [mx_record("0 .")]
    assert DnsMxResolver().mx_hosts("nomail.example") == []


def test_dns_resolver_has_a_short_time_limit():
    assert DnsMxResolver(timeout=1.5)._resolver.lifetime == 1.5


def test_one_lookup_for_many_rows_of_a_domain(dns_answers):
    answers, calls = dns_answers
    answers["example.com"] = [mx_record("10 mx.zoho.com.")]
    resolver = DnsMxResolver()
    results = [validate_row(hostless_row(f"user{i}@example.com"), mx=resolver)
               for i in range(50)]
    assert {r.provider for r in results} == {"zoho"}
    assert len(calls) == 1
