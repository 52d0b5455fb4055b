"""Hints: every verdict has one, the provider's own wins, and the server's words win over both."""

from __future__ import annotations

import pytest

from app.accounts.providers import PROVIDERS
from app.probe import ErrorCode, hint_for
from app.probe.hints import GENERIC_HINTS, PROVIDER_FAMILIES, PROVIDER_HINTS, provider_family

E = ErrorCode
TENANT = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
)
BASIC_OFF = "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_a_generic_hint(code: ErrorCode) -> None:
    hint = hint_for(code, None)
    assert hint == GENERIC_HINTS[code]
    assert len(hint) > 40 and hint.endswith(".")


def test_no_hint_for_success_or_an_unknown_code() -> None:
    assert hint_for(None, "gmail") is None
    assert hint_for("no_such_code", "gmail") is None


def test_a_stored_code_string_works_like_the_enum() -> None:
    assert hint_for("app_password_required", "gmail") == hint_for(E.APP_PASSWORD_REQUIRED, "gmail")


@pytest.mark.parametrize(
    ("provider", "code", "words"),
    [
        ("gmail", E.APP_PASSWORD_REQUIRED, "2-Step Verification"),
        ("gsuite", E.APP_PASSWORD_REQUIRED, "apppasswords"),
        ("gmail", E.WEB_LOGIN_REQUIRED, "browser"),
        ("gmail", E.BASIC_AUTH_DISABLED, "enable it in Gmail"),
        ("microsoft", E.BASIC_AUTH_DISABLED, "only OAuth"),
        ("o365", E.BASIC_AUTH_DISABLED, "App Passwords do not help"),
        ("outlook", E.AUTH_FAILED, "Authenticated SMTP"),
        ("yahoo", E.APP_PASSWORD_REQUIRED, "app password"),
        ("aol", E.ACCOUNT_LOCKED, "do not retry"),
        ("zoho", E.BASIC_AUTH_DISABLED, "IMAP Access"),
        ("zoho", E.APP_PASSWORD_REQUIRED, "application-specific password"),
        ("yandex", E.BASIC_AUTH_DISABLED, "enable IMAP"),
        ("yandex", E.AUTH_FAILED, "app password"),
        ("icloud", E.APP_PASSWORD_REQUIRED, "app-specific password"),
        ("godaddy", E.AUTH_FAILED, "GoDaddy"),
        ("sendgrid", E.AUTH_FAILED, "apikey"),
    ],
)
def test_provider_hint_overrides_the_generic_one(provider: str, code: E, words: str) -> None:
    hint = hint_for(code, provider)
    assert hint != GENERIC_HINTS[code]
    assert words in (hint or "")


def test_provider_names_are_matched_like_the_api_stores_them() -> None:
    assert hint_for(E.AUTH_FAILED, " GMail ") == hint_for(E.AUTH_FAILED, "gmail")


@pytest.mark.parametrize("provider", [None, "", "custom", "smtp", "other", "no-such-provider"])
def test_unknown_or_generic_provider_gets_the_generic_hint(provider: str | None) -> None:
    assert hint_for(E.APP_PASSWORD_REQUIRED, provider) == GENERIC_HINTS[E.APP_PASSWORD_REQUIRED]


def test_a_provider_without_a_hint_for_this_code_falls_back() -> None:
    assert hint_for(E.DNS_NOT_FOUND, "gmail") == GENERIC_HINTS[E.DNS_NOT_FOUND]


def test_tenant_smtp_auth_text_asks_the_tenant_admin_whatever_the_provider() -> None:
    for provider in ("o365", "godaddy", "custom", None):
        hint = hint_for(E.BASIC_AUTH_DISABLED, provider, TENANT)
        assert hint is not None and "tenant's admin" in hint and "admin center" in hint


def test_basic_auth_text_says_only_oauth_helps() -> None:
    hint = hint_for(E.BASIC_AUTH_DISABLED, None, BASIC_OFF)
    assert hint is not None and "only OAuth" in hint
    assert "tenant's admin" not in hint


def test_text_hints_apply_only_to_their_own_code() -> None:
    # The same words under another verdict must not pull in the tenant hint.
    assert hint_for(E.AUTH_FAILED, None, TENANT) == GENERIC_HINTS[E.AUTH_FAILED]


def test_hint_tables_are_consistent() -> None:
    families = set(PROVIDER_FAMILIES.values())
    assert {family for _, family in PROVIDER_HINTS} <= families
    assert set(PROVIDER_FAMILIES) <= PROVIDERS
    # Every provider the API accepts either has a family or is generic on purpose.
    assert PROVIDERS - set(PROVIDER_FAMILIES) == {"smtp", "custom", "other"}
    assert provider_family("outlook") == "microsoft"

