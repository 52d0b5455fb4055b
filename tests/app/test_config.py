import ipaddress

import pytest

from app.config import ConfigError, load_settings
from app.probe.policy import HostPolicy


def test_defaults_are_safe(tmp_path):
    settings = load_settings(MAILCONNECT_DATA_DIR=str(tmp_path))
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve()}/mailconnect.db"
    assert settings.allow_networks == ()
    assert settings.probe_timeout_seconds == 20
    assert settings.max_accounts_per_request == 10_000
    assert settings.lease_seconds < settings.broker_visibility_timeout


def test_postgres_urls_get_a_driver():
    assert load_settings(DATABASE_URL="postgres://u@h/db").sqlalchemy_url == (
        "postgresql+psycopg://u@h/db")


def test_allow_networks_parsed():
    settings = load_settings(PROBE_ALLOW_NETWORKS="127.0.0.0/8, ::1")
    assert settings.allow_networks == (ipaddress.ip_network("127.0.0.0/8"),
                                       ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize("overrides", [
    {"PROBE_ALLOW_NETWORKS": "10.0.0.0/33"},
    {"ROW_LEASE_SECONDS": "4000"},
    {"ROW_LEASE_SECONDS": "30", "PROBE_TIMEOUT_SECONDS": "20"},
    {"PROBE_TIMEOUT_SECONDS": "0"},
])
def test_unworkable_configuration_refused(overrides):
    with pytest.raises(ConfigError):
        load_settings(**overrides)


def test_production_host_policy_is_the_mail_ports_and_no_bans():
    settings = load_settings()
    assert settings.host_policy == HostPolicy()
    assert settings.probe_settings().host_policy == HostPolicy()
    assert settings.host_policy.describe_ports() == "25, 143, 465, 587, 993, 2525"


def test_host_policy_parsed_for_validation_and_the_probe():
    settings = load_settings(PROBE_BANNED_HOSTS=".Example.com, 203.0.113.7",
                             PROBE_ALLOWED_PORTS="25,465,587,993,20000-29999")
    policy = settings.host_policy
    assert policy.banned_hosts == ("example.com", "203.0.113.7")
    assert policy.allowed_ports == ((25, 25), (465, 465), (587, 587), (993, 993),
                                    (20000, 29999))
    assert settings.probe_settings().host_policy == policy


@pytest.mark.parametrize(("name", "value"), [
    ("PROBE_ALLOWED_PORTS", "25,smtp"),
    ("PROBE_ALLOWED_PORTS", "993-143"),
    ("PROBE_ALLOWED_PORTS", "70000"),
    ("PROBE_ALLOWED_PORTS", ""),
    ("PROBE_BANNED_HOSTS", "*.example.com"),
    ("PROBE_BANNED_HOSTS", "example.com,bad host"),
])
def test_bad_host_policy_is_a_config_error_naming_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings(**{name: value})


def test_development_key_is_generated_once_and_shared(tmp_path, caplog):
    first = load_settings(MAILCONNECT_DATA_DIR=str(tmp_path)).credential_cipher()
    token = first.encrypt({})
    second = load_settings(MAILCONNECT_DATA_DIR=str(tmp_path)).credential_cipher()
    assert second.decrypt(token) == {}
    assert "CREDENTIALS_KEYS is not set" in caplog.text
    assert (tmp_path / "credentials.key").stat().st_mode & 0o777 == 0o600


def test_bad_credentials_keys_refused():
    with pytest.raises(ConfigError, match="CREDENTIALS_KEYS"):
        load_settings(CREDENTIALS_KEYS="not-a-key").credential_cipher()


def test_s3_credentials_come_from_settings_not_only_the_process_environment(monkeypatch):
    from app.storage import S3ReportStore

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="shh")
    assert "shh" not in repr(settings)
    store = S3ReportStore("bucket", "http://127.0.0.1:9", access_key_id="AKIDEXAMPLE",
                          secret_access_key="shh")
    assert "AKIDEXAMPLE" in store.download_url("k.csv", 60)


def test_default_proxy_parsed_for_the_probe():
    settings = load_settings(PROBE_PROXY_URL="http://u:Prx-Secret-77@proxy.example.net:3128")
    proxy = settings.probe_settings().default_proxy
    assert proxy.display == "http://u@proxy.example.net:3128"
    assert proxy.password.reveal() == "Prx-Secret-77"
    assert load_settings().probe_settings().default_proxy is None


def test_bad_default_proxy_refused_naming_it_without_its_password():
    with pytest.raises(ConfigError) as caught:
        load_settings(PROBE_PROXY_URL="socks5://u:Prx-Secret-77@proxy.example.net")
    assert "PROBE_PROXY_URL" in str(caught.value)
    assert "Prx-Secret-77" not in str(caught.value)
