"""The status page, /jobs/<requestId>: the cookie login, its CSRF guard, the 404 that does not
tell another team's job from none, HTML errors, the poll limit, escaping; then the whole page
in headless Chromium against a live app and a real job tested against Dovecot.

The browser test writes its screenshot to the test's tmp directory, and to
docs/status-page.png (the README's) only when UPDATE_SCREENSHOTS=1: CI never changes the tree,
and the checked-in picture is refreshed on purpose."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from markupsafe import escape
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from app.config import load_settings
from app.devserver import free_port
from app.jobs.finish import finish_job
from app.jobs.hostgate import OpenGate
from app.jobs.runner import RetryPolicy, RowProcessor, start_job
from app.probe import Prober
from app.probe.hints import GENERIC_HINTS
from app.probe.model import ErrorCode
from app.teams import create_api_key
from app.web import create_app, pages
from tests.conftest import FakeQueue
from tests.factories import bulk_row
from tests.workers.test_bulk_connect import account

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = ROOT / "docs" / "status-page.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ORIGIN = "http://localhost"  # the test client's host


def submit(client, key: str, rows: list[dict]) -> str:
    response = client.post("/v1/email-accounts/connect", json=rows, headers={"x-api-key": key})
    assert response.status_code == 200, response.json
    return response.json["payload"]["requestId"]


def log_in(client, request_id: str, key: str, origin: str = ORIGIN):
    return client.post(f"/jobs/{request_id}/login", data={"apiKey": key},
                       headers={"Origin": origin})


def cookie_header(response) -> str:
    (header,) = [v for k, v in response.headers.items() if k == "Set-Cookie"]
    return header


# --- the page over Flask's test client --------------------------------------------------------

def test_the_form_logs_in_with_a_cookie_and_redirects_back(client, api_key):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    form = client.get(f"/jobs/{request_id}")
    assert form.status_code == 200 and form.mimetype == "text/html"
    assert f'action="/jobs/{request_id}/login"' in form.text

    response = log_in(client, request_id, api_key)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/jobs/{request_id}"
    cookie = cookie_header(response)
    assert cookie.startswith(f"{pages.COOKIE}={api_key};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/jobs" in cookie
    assert "Secure" not in cookie, "plain http: a Secure cookie would never come back"

    page = client.get(f"/jobs/{request_id}")
    assert page.status_code == 200
    assert re.search(r'id="status"[^>]*>queued<', page.text)
    assert '<meta http-equiv="refresh"' in page.text
    assert api_key not in page.text, "the key is never written into a page"
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none'


def test_the_cookie_is_secure_on_https(client, api_key):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    response = client.post(f"/jobs/{request_id}/login", data={"apiKey": api_key},
                           base_url="https://localhost", headers={"Origin": "https://localhost"})
    assert response.status_code == 303
    assert "Secure" in cookie_header(response)


def test_a_wrong_or_missing_key_shows_the_form_again_with_the_error(client, api_key):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    wrong = log_in(client, request_id, "mc_not-a-key")
    assert wrong.status_code == 401 and wrong.mimetype == "text/html"
    assert "is not a valid API key" in wrong.text and 'name="apiKey"' in wrong.text
    assert "Set-Cookie" not in wrong.headers
    assert "mc_not-a-key" not in wrong.text, "not even a wrong key is echoed"
    missing = log_in(client, request_id, "  ")
    assert missing.status_code == 401 and "API key: is required" in missing.text


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {},  # neither Origin nor Sec-Fetch-Site: not a browser's same-site form
    {"Sec-Fetch-Site": "cross-site"},
])
def test_forms_sent_from_another_site_are_refused(client, api_key, headers):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    for action in ("login", "logout"):
        response = client.post(f"/jobs/{request_id}/{action}", data={"apiKey": api_key},
                               headers=headers)
        assert response.status_code == 403 and response.mimetype == "text/html"
        assert "Set-Cookie" not in response.headers


def test_a_same_origin_form_without_origin_header_passes(client, api_key):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    response = client.post(f"/jobs/{request_id}/login", data={"apiKey": api_key},
                           headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303


def test_another_teams_job_and_an_unknown_one_get_the_same_404_page(client, services, api_key):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    other_key = create_api_key(services.db, services.clock, "globex").key
    client.set_cookie(pages.COOKIE, other_key, path="/jobs")
    theirs = client.get(f"/jobs/{request_id}")
    unknown = client.get("/jobs/0123456789abcdef0123")
    for response in (theirs, unknown):
        assert response.status_code == 404 and response.mimetype == "text/html"
        assert str(escape(pages.NOT_FOUND)) in response.text
        assert "Forget API key" in response.text  # the way to try another team's key
    assert theirs.text == unknown.text.replace("0123456789abcdef0123", request_id)


@pytest.mark.parametrize("path", ["/jobs/a/b", "/jobs/%00", "/jobs/" + "x" * 65,
                                  "/jobs/%3Cscript%3E/login"])
def test_odd_addresses_under_jobs_get_html_404s(client, path):
    response = client.get(path) if not path.endswith("/login") else client.post(
        path, headers={"Origin": ORIGIN})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "<script>" not in response.text


def test_logout_forgets_the_key(client, api_key):
    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    log_in(client, request_id, api_key)
    assert client.get(f"/jobs/{request_id}").text.count('id="status"') == 1
    response = client.post(f"/jobs/{request_id}/logout", headers={"Origin": ORIGIN})
    assert response.status_code == 303
    cookie = cookie_header(response)
    assert cookie.startswith(f"{pages.COOKIE}=;") and "Path=/jobs" in cookie
    assert 'name="apiKey"' in client.get(f"/jobs/{request_id}").text


def test_a_revoked_key_in_the_cookie_shows_the_form_and_is_dropped(client, services, api_key):
    from app.teams import revoke_api_key

    request_id = submit(client, api_key, [bulk_row("a@example.com")])
    spare = create_api_key(services.db, services.clock, "acme").key
    revoke_api_key(services.db, services.clock, spare)
    client.set_cookie(pages.COOKIE, spare, path="/jobs")
    response = client.get(f"/jobs/{request_id}")
    assert response.status_code == 401 and "no longer valid" in response.text
    assert cookie_header(response).startswith(f"{pages.COOKIE}=;")


def test_everything_shown_is_escaped(client, api_key):
    # Column names come from the client and are listed on the page.
    body = "smtpEmailAddress,<script>alert(1)</script>\na@example.com,x\n"
    response = client.post("/v1/email-accounts/connect", data=body,
                           headers={"x-api-key": api_key, "Content-Type": "text/csv"})
    assert response.status_code == 200, response.json
    request_id = response.json["payload"]["requestId"]
    log_in(client, request_id, api_key)
    page = client.get(f"/jobs/{request_id}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_page_loads_count_as_polls_and_the_limit_is_an_html_page(env, api_key, services):
    limited = create_app(settings=load_settings(**{**env, "RATE_LIMIT_POLL": "2/minute"}),
                         queue=FakeQueue()).test_client()
    request_id = submit(limited, api_key, [bulk_row("a@example.com")])
    log_in(limited, request_id, api_key)
    assert [limited.get(f"/jobs/{request_id}").status_code for _ in range(2)] == [200, 200]
    refused = limited.get(f"/jobs/{request_id}")
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert "more than 2 per 1 minute polls" in refused.text
    # The same key's API polls share the count.
    api = limited.get(f"/v1/email-accounts/connect/status/{request_id}",
                      headers={"x-api-key": api_key})
    assert api.status_code == 429


def test_error_bars_are_longest_first_with_hints():
    bars = pages.error_bars({"invalid_fields": 1, "auth_failed": 4, "connection_refused": 2})
    assert [(b["code"], b["count"], b["width"]) for b in bars] == [
        ("auth_failed", 4, 100.0), ("connection_refused", 2, 50.0), ("invalid_fields", 1, 25.0)]
    assert bars[0]["hint"] == GENERIC_HINTS[ErrorCode.AUTH_FAILED]
    assert "validationErrors" in bars[2]["hint"]
    assert pages.error_bars({}) == []


# --- the page in Chromium, against a live app and a real job ----------------------------------

@dataclass
class LiveApp:
    url: str
    client: object  # Flask's test client on the same app, for the API calls
    requests: list[str]  # paths the live server was asked for, in order


@pytest.fixture
def live_app(services, queue) -> Iterator[LiveApp]:
    app = create_app(services=services, queue=queue)
    seen: list[str] = []

    def recording(environ, start_response):
        seen.append(environ["PATH_INFO"])
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, recording, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApp(f"http://127.0.0.1:{server.server_port}", app.test_client(), seen)
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.mark.integration
def test_the_page_in_chromium(live_app, browser, services, settings, api_key, mail_server,
                              monkeypatch, tmp_path):
    monkeypatch.setattr(pages, "REFRESH_SECONDS", 1)
    m = mail_server
    rows = [
        account("alice@example.test", m.submissions_port, "ssl", m.imaps_port, "ssl"),
        account("carol@example.test", m.submission_port, "starttls", m.imaps_port, "ssl"),
        account("bob@example.test", m.submission_port, "starttls", m.imaps_port, "ssl",
                password="wrong-password"),
        account("dave@example.test", m.submission_port, "starttls", m.imaps_port, "ssl",
                password="wrong-too"),
        account("erin@example.test", free_port(), "ssl", m.imaps_port, "ssl"),
        bulk_row("not-an-email", smtpPort=99999),
    ]
    request_id = submit(live_app.client, api_key, rows)
    page_path = f"/jobs/{request_id}"

    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(live_app.url + page_path)
    # A wrong key: the form again, with the error, and nothing kept.
    page.fill("#apiKey", "mc_wrong-key")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("is not a valid API key")
    assert context.cookies() == []

    page.fill("#apiKey", api_key)
    page.click("button[type=submit]")
    expect(page.locator("#status")).to_have_text("queued")
    assert page.url == live_app.url + page_path, "redirected back to the job, key not in it"
    (cookie,) = context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"],
            cookie["secure"]) == (pages.COOKIE, True, "Strict", "/jobs", False)
    assert api_key not in page.content()

    # The job runs one row at a time; the page follows on its own.
    runner = RowProcessor(db=services.db, clock=services.clock, cipher=services.cipher,
                          prober=Prober(settings.probe_settings()), gate=OpenGate(),
                          policy=RetryPolicy(attempts=1), lease_seconds=60)
    pending = start_job(services.db, services.clock, request_id)
    assert len(pending) == 5  # the invalid row was settled at intake
    runner.process(pending[0])
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#count-processed")).to_have_text("2")  # the invalid row and alice
    expect(page.locator("#progress-text")).to_have_text("33.3 %")
    expect(page.locator("#report-link")).to_have_count(0)
    for row_id in pending[1:]:
        runner.process(row_id)
    assert finish_job(services.db, services.clock, services.store, request_id)

    expect(page.locator("#status")).to_have_text("completed", timeout=15_000)
    counts = {name: page.locator(f"#count-{name}").inner_text()
              for name in ("total", "processed", "succeeded", "failed", "invalid")}
    assert counts == {"total": "6", "processed": "6", "succeeded": "2", "failed": "3",
                      "invalid": "1"}
    assert page.locator("#progress").get_attribute("value") == "100.0"
    bars = page.locator("tr.bar-row")
    assert [bars.nth(i).get_attribute("data-code") for i in range(bars.count())] == [
        "auth_failed", "connection_refused", "invalid_fields"]
    auth_failed = page.locator('tr[data-code="auth_failed"]')
    expect(auth_failed.locator(".bar-count")).to_have_text("2")
    expect(auth_failed.locator(".hint")).to_have_text(GENERIC_HINTS[ErrorCode.AUTH_FAILED])
    assert auth_failed.locator("rect").get_attribute("width") == "100.0"
    assert page.locator('tr[data-code="connection_refused"] rect').get_attribute(
        "width") == "50.0"

    report_url = page.locator("#report-link").get_attribute("href")
    report = list(csv.DictReader(io.StringIO(requests.get(report_url, timeout=10).text)))
    assert [r["status"] for r in report] == [
        "connected", "connected", "failed", "failed", "failed", "invalid"]
    assert page.locator("#failed-rows-link").count() == 1

    # Ended: no refresh tag, and no further loads however long one waits.
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    expect(page.locator("#refresh-note")).to_contain_text("no longer refreshes")
    loads = live_app.requests.count(page_path)
    page.wait_for_timeout(3 * pages.REFRESH_SECONDS * 1000)
    assert live_app.requests.count(page_path) == loads

    shot = tmp_path / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    # A link from another site: SameSite=Strict holds the cookie back on that navigation,
    # and the page reloads itself from this site to get it.
    other_site = context.new_page()
    other_site.set_content(f'<a id="link" href="{live_app.url}{page_path}">the import</a>')
    other_site.click("#link")
    expect(other_site.locator("#status")).to_have_text("completed")
    other_site.close()

    # Forgetting the key brings the form back.
    page.click("#logout")
    expect(page.locator("#apiKey")).to_be_visible()
    assert context.cookies() == []
    context.close()
