"""proxyUrl on a row: validated naming the field, kept secret, stored encrypted, read back."""

import json

import pytest

from app.credentials import CredentialCipher
from app.importing.rows import PROXY, AccountInput, endpoint_from_settings, validate_row
from app.probe.model import ProxyScheme
from app.probe.policy import HostPolicy, parse_banned_hosts
from tests.factories import bulk_row

URL = "socks5://proxyuser:Prx-Secret-77@proxy.example.net:1080"


def test_a_row_with_a_proxy_carries_it_to_both_endpoints():
    account = validate_row(bulk_row(proxyUrl=URL))
    assert isinstance(account, AccountInput)
    for endpoint in (account.smtp, account.imap):
        assert endpoint.proxy.scheme == ProxyScheme.SOCKS5
        assert (endpoint.proxy.host, endpoint.proxy.port) == ("proxy.example.net", 1080)
        assert endpoint.proxy.password.reveal() == "Prx-Secret-77"


def test_settings_show_the_proxy_without_its_password_and_secrets_hold_it():
    account = validate_row(bulk_row(proxyUrl=URL))
    settings = account.settings()
    assert settings[PROXY] == "socks5://proxyuser@proxy.example.net:1080"
    assert "Prx-Secret-77" not in json.dumps(settings)
    assert account.secrets()[PROXY].reveal() == URL


def test_stored_encrypted_and_read_back_as_the_same_proxy():
    """The path a job row and a re-test take: encrypt at intake, decrypt in the worker."""
    cipher = CredentialCipher([CredentialCipher.generate_key()])
    account = validate_row(bulk_row(proxyUrl=URL))
    token = cipher.encrypt(account.secrets())
    assert "Prx-Secret-77" not in token
    secrets = cipher.decrypt(token)
    endpoint = endpoint_from_settings(account.settings()["smtp"], secrets["smtp"],
                                      proxy=secrets.get(PROXY))
    assert endpoint.proxy == account.smtp.proxy


def test_no_proxy_is_none_everywhere():
    for raw in (bulk_row(), bulk_row(proxyUrl=""), bulk_row(proxyUrl="  ")):
        account = validate_row(raw)
        assert account.smtp.proxy is None and account.imap.proxy is None
        assert PROXY not in account.settings() and PROXY not in account.secrets()


@pytest.mark.parametrize("bad", ["ftp://u:Prx-Secret-77@h:1", "socks5://u:Prx-Secret-77@h",
                                 "socks5://u:Prx-Secret-77@h:1/x", 1080])
def test_a_bad_proxy_url_names_the_field_and_never_its_password(bad):
    errors = validate_row(bulk_row(proxyUrl=bad))
    assert isinstance(errors, list)
    assert [e.field for e in errors] == ["proxyUrl"]
    assert "Prx-Secret-77" not in errors[0].message


def test_a_banned_proxy_host_is_refused_but_its_port_is_not_a_mail_port_rule():
    policy = HostPolicy(banned_hosts=parse_banned_hosts("example.net"))
    errors = validate_row(bulk_row(proxyUrl=URL), policy=policy)
    assert [(e.field, e.message) for e in errors] == [
        ("proxyUrl", "proxy.example.net is not allowed: this service refuses example.net and "
                     "its subdomains")]
    assert isinstance(validate_row(bulk_row(proxyUrl=URL)), AccountInput)  # port 1080 is fine
