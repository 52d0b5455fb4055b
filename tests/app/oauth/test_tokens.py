"""Refreshing OAuth2 accounts' tokens before their probe, against a local token endpoint."""

import datetime as dt
import ipaddress

from sqlalchemy import select, update

from app.accounts.retest import load_retest_target, store_refreshed_tokens
from app.credentials import Secret
from app.importing.rows import ACCESS_TOKEN, EXPIRES_AT, REFRESH_TOKEN, validate_row
from app.jobs.hostgate import OpenGate
from app.jobs.intake import submit_job
from app.jobs.runner import RetryPolicy, RowProcessor, start_job
from app.models import ConnectJobRow, EmailAccount, RowState
from app.oauth.tokens import TokenRefresher, needs_refresh
from app.probe.model import AuthMethod, ErrorCode, ProtocolResult
from tests.app.jobs.doubles import FakeProber

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
OK = ProtocolResult("ok", duration_ms=3)


def oauth_row(email: str, **fields) -> dict:
    return {"smtpEmailAddress": email, "authType": "oauth2", "oauth2Provider": "microsoft",
            **fields}


def run_job(services, team_id, rows, prober, refresher=None):
    job = submit_job(services.db, services.cipher, services.clock, team_id, rows,
                     policy=services.settings.host_policy)
    processor = RowProcessor(
        db=services.db, clock=services.clock, cipher=services.cipher, prober=prober,
        gate=OpenGate(), policy=RetryPolicy(), lease_seconds=60,
        tokens=refresher or TokenRefresher(services.db, services.cipher, services.clock,
                                           allow_networks=LOOPBACK))
    for row_id in start_job(services.db, services.clock, job.job_id):
        processor.process(row_id)
    with services.db.reading() as session:
        return session.scalars(select(ConnectJobRow).where(ConnectJobRow.job_id == job.job_id)
                               .order_by(ConnectJobRow.row_no)).all()


def test_a_refresh_token_row_is_refreshed_then_probed_with_the_new_access_token(
        services, team_id, oauth):
    old = oauth.grant("ann@contoso.com")
    prober = FakeProber()
    [row] = run_job(services, team_id, [oauth_row("ann@contoso.com", oauth2RefreshToken=old)],
                    prober)
    assert row.state == RowState.DONE and row.account_status == 1
    [(smtp, imap)] = prober.calls
    assert smtp.auth == imap.auth == AuthMethod.OAUTH2
    assert smtp.password == imap.password == Secret(oauth.issued[-1])
    assert (smtp.host, imap.host) == ("smtp.office365.com", "outlook.office365.com")
    with services.db.reading() as session:
        account = session.scalar(select(EmailAccount))
    stored = services.cipher.decrypt(account.credentials)
    assert account.auth_type == "oauth2" and account.oauth2_provider == "microsoft"
    assert stored[ACCESS_TOKEN] == Secret(oauth.issued[-1])
    # The endpoint rotated the refresh token: the new one replaces the old.
    assert stored[REFRESH_TOKEN] != Secret(old)
    assert stored[REFRESH_TOKEN].reveal() in oauth.refresh_tokens
    # The system clock: the expiry is an hour after the refresh, give or take the test's run.
    left = dt.datetime.fromisoformat(stored[EXPIRES_AT].reveal()) - services.clock.now()
    assert dt.timedelta(minutes=59) < left <= dt.timedelta(hours=1)


def test_a_revoked_grant_is_oauth_refresh_failed_with_the_endpoints_words_scrubbed(
        services, team_id, oauth):
    revoked = oauth.grant("bob@contoso.com")
    oauth.revoke("bob@contoso.com")
    prober = FakeProber()
    [row] = run_job(services, team_id,
                    [oauth_row("bob@contoso.com", oauth2RefreshToken=revoked)], prober)
    assert prober.calls == []
    assert row.state == RowState.DONE and row.account_status == 0
    assert row.smtp_error_code == row.imap_error_code == ErrorCode.OAUTH_REFRESH_FAILED
    assert "invalid_grant" in row.smtp_error and "AADSTS70000" in row.smtp_error
    # The endpoint echoed the refresh token; it never reaches the stored result.
    assert revoked not in row.smtp_error and "********" in row.smtp_error


def test_no_app_for_the_provider_is_oauth_refresh_failed_saying_so(services, team_id):
    [row] = run_job(services, team_id, [oauth_row("cy@gmail.com", oauth2Provider="google",
                                                  oauth2RefreshToken="rt-x")],
                    FakeProber())
    assert row.smtp_error_code == ErrorCode.OAUTH_REFRESH_FAILED
    assert "no OAuth app is registered" in row.smtp_error and "google" in row.smtp_error


def test_an_unreachable_token_endpoint_is_retried(services, team_id, oauth):
    oauth.status_override = 503
    token = oauth.grant("dee@contoso.com")
    [row] = run_job(services, team_id, [oauth_row("dee@contoso.com", oauth2RefreshToken=token)],
                    FakeProber())
    assert row.state == RowState.WAITING and row.wait_until is not None
    assert row.smtp_error_code == ErrorCode.OAUTH_REFRESH_FAILED


def test_an_access_token_is_refreshed_only_when_it_expires_within_five_minutes():
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)

    def tokens(minutes_left: float | None) -> dict:
        out = {ACCESS_TOKEN: Secret("at")}
        if minutes_left is not None:
            out[EXPIRES_AT] = Secret((now + dt.timedelta(minutes=minutes_left)).isoformat())
        return out

    assert needs_refresh(tokens(4.5), now) and needs_refresh(tokens(-1), now)
    assert not needs_refresh(tokens(6), now) and not needs_refresh(tokens(None), now)
    assert needs_refresh({REFRESH_TOKEN: Secret("rt")}, now)


def test_an_unexpired_access_token_is_used_without_a_refresh(services, team_id, oauth):
    prober = FakeProber()
    run_job(services, team_id, [oauth_row("eve@contoso.com", oauth2AccessToken="at-given",
                                          oauth2RefreshToken=oauth.grant("eve@contoso.com"))],
            prober)
    assert oauth.requests == 0 and prober.calls[0][0].password == Secret("at-given")


def test_a_concurrent_patch_wins_over_the_refresh_write(services, team_id, oauth):
    run_job(services, team_id, [oauth_row("fay@contoso.com", oauth2AccessToken="at-1")],
            FakeProber())
    with services.db.core_reading() as connection:
        account_id = connection.scalar(select(EmailAccount.id))
        target = load_retest_target(connection, team_id, account_id)
    patched = services.cipher.encrypt({ACCESS_TOKEN: Secret("at-patched")})
    with services.db.transaction() as session:  # a PATCH: new credentials, a new version
        session.execute(update(EmailAccount).values(
            credentials=patched, settings_version=EmailAccount.settings_version + 1))
    store_refreshed_tokens(services.db, target,
                           services.cipher.encrypt({ACCESS_TOKEN: Secret("at-refreshed")}))
    with services.db.reading() as session:
        assert session.scalar(select(EmailAccount.credentials)) == patched
    # Without the PATCH, the refresh lands.
    with services.db.core_reading() as connection:
        target = load_retest_target(connection, team_id, account_id)
    store_refreshed_tokens(services.db, target,
                           services.cipher.encrypt({ACCESS_TOKEN: Secret("at-refreshed")}))
    with services.db.reading() as session:
        stored = services.cipher.decrypt(session.scalar(select(EmailAccount.credentials)))
    assert stored[ACCESS_TOKEN] == Secret("at-refreshed")


def test_oauth_rows_validation_names_the_fields():
    def fields(row):
        return {e.field for e in validate_row(row)}

    assert fields(oauth_row("a@contoso.com")) == {"oauth2AccessToken"}
    assert fields({**oauth_row("a@x.com", oauth2RefreshToken="rt"),
                   "oauth2Provider": "yahoo"}) == {"oauth2Provider"}
    assert fields({"smtpEmailAddress": "a@x.com", "authType": "kerberos"}) == {"authType"}
    assert "oauth2RefreshToken" in fields({"smtpEmailAddress": "a@x.com", "smtpHost": "x.com",
                                           "smtpPort": 465, "smtpPassword": "p",
                                           "smtpOnly": True, "oauth2RefreshToken": "rt"})
    # No password needed; Google's servers filled from the provider.
    checked = validate_row({"smtpEmailAddress": "a@x.com", "authType": "OAuth2",
                            "oauth2Provider": "google", "oauth2AccessToken": "at"})
    assert checked.smtp.host == "smtp.gmail.com" and checked.imap.host == "imap.gmail.com"
    assert "emailServiceProvider" in checked.filled
    assert checked.secrets() == {ACCESS_TOKEN: Secret("at")}
