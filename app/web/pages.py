"""The status page, `GET /jobs/<requestId>`: one import's progress for people who would rather
look than read JSON. Server-rendered (Jinja, autoescaped), its own small stylesheet, no script.

Access. The page opens with an API key that the browser keeps in a cookie, entered once in a
form that POSTs to `/jobs/<requestId>/login` and is redirected back (303). The cookie is
HttpOnly, SameSite=Strict, Path=/jobs and Secure on https, so no script and no other site ever
sees or sends it; the key never appears in a URL or in a page. `/jobs/<requestId>/logout`
forgets it. A job of another team and an unknown id get the same 404 page.

CSRF. Both forms change only this browser's cookie, but a forged login could still plant an
attacker's key. SameSite=Strict keeps the cookie off cross-site requests, and every POST must
come from this host: its Origin header (sent by browsers with every form POST) must name the
host the request was sent to, or, without one (or with "null"), Sec-Fetch-Site must say
same-origin.
Anything else is a 403 page. `form-action 'self'` and `frame-ancestors 'none'` in the page's
Content-Security-Policy keep the forms from being framed or pointed elsewhere.

A link followed from another site arrives without the cookie (that is what Strict means), so
such a visit answers a page that reloads itself at once, from this site, with the cookie.

Refresh. While the job runs the page reloads itself with a meta refresh (no script: the
policy allows none); once the job has ended the tag is left out, so the reloading stops.
Each load counts as a poll against the key's limit (Category.POLL).

Errors here are HTML pages, not the API's JSON: a person reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException

from app.jobs.report import INVALID_HINTS
from app.jobs.status import job_view, status_payload
from app.probe.hints import hint_for
from app.storage import StorageError
from app.web.common import REQUEST_ID
from app.web.common import services as _services
from app.web.errors import DATABASE_RETRY_AFTER_SECONDS, database_unavailable
from app.web.openapi import PAGE_COOKIE, documented
from app.web.ratelimit import DESCRIPTION, Category, Count, count_call

log = logging.getLogger(__name__)

blueprint = Blueprint("pages", __name__, url_prefix="/jobs", template_folder="templates",
                      static_folder="static", static_url_path="/static")

COOKIE = "mailconnect_key"
COOKIE_PATH = "/jobs"
# How often a running job's page reloads itself: each load is one poll of the job's row.
REFRESH_SECONDS = 3
# No API key is this long: a longer one is refused before it is hashed and looked up.
MAX_KEY_LENGTH = 256

NOT_FOUND = ("No import with this id for the API key this browser keeps. Check the link, or "
             "forget the key and enter another team's.")
SECURITY_HEADERS = {
    # No script at all, styles only from our own stylesheet, forms only to this host.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The page's address does not travel with a click on a report link (the links also say
    # noreferrer). Not "no-referrer": with it, Chromium sends `Origin: null` with the forms.
    "Referrer-Policy": "same-origin",
}


@blueprint.get("/<path:request_id>")
@documented(200, answer_type="text/html", security=[PAGE_COOKIE], tag="pages", errors=[
    (401, "no valid API key in the cookie: the login form"), (404, "no such import for the "
    "key's team"), (429, "RATE_LIMIT_POLL exceeded; the page retries"), (503, "the report "
    "store cannot sign links; the page retries")])
def job_page(request_id: str) -> Any:
    # <path:...> so that any address under /jobs gets this blueprint's HTML 404, not the
    # API's JSON one that a routing miss would get.
    job_id = _job_id(request_id)
    key = request.cookies.get(COOKIE, "")
    if not key and request.headers.get("Sec-Fetch-Site") == "cross-site":
        # Followed from another site (a link in a mail or a chat): SameSite=Strict kept the
        # cookie back. Reloading from this page is a same-site navigation, which carries it.
        return _error_page(200, "Opening the import", "Opening the import…", refresh=0)
    team_id = _team_for(key)
    if team_id is None:
        error = "The API key this browser kept is no longer valid; enter one." if key else None
        response = _login_form(job_id, error)
        if key:
            _forget_key(response)
        return response
    count = count_call(Category.POLL, team_id, key)
    if count is not None and count.exceeded:
        return _too_many(count)
    services = _services()
    view = job_view(services.db, team_id, job_id)
    if view is None:
        abort(404)
    try:
        job = status_payload(view, services.store, services.clock,
                             services.settings.report_url_ttl_seconds,
                             services.settings.job_retention_days)
    except StorageError as exc:
        log.error("report link for %s: %s", job_id, exc)
        return _error_page(503, "Report links unavailable",
                           "The report store cannot sign a download link right now. This "
                           "page tries again shortly.", refresh=REFRESH_SECONDS)
    return _page(render_template(
        "job.html", job=job, bars=error_bars(job["errorsByCode"]),
        refresh=None if job["isCompleted"] else REFRESH_SECONDS))


@blueprint.post("/<request_id>/login")
@documented(303, answer_type="text/html", public=True, tag="pages", errors=[
    (401, "the form's API key is missing, unknown or revoked: the form again"),
    (403, "the form was not sent from this host's own page")], bodies={
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["apiKey"],
        "properties": {"apiKey": {"type": "string"}}}}})
def login(request_id: str) -> Any:
    job_id = _job_id(request_id)
    _require_same_origin()
    key = request.form.get("apiKey", "").strip()
    if not key:
        return _login_form(job_id, "API key: is required.")
    if _team_for(key) is None:
        return _login_form(job_id, "API key: is not a valid API key (unknown or revoked).")
    response = redirect(url_for(".job_page", request_id=job_id), 303)
    response.set_cookie(COOKIE, key, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=request.is_secure)
    return _page(response)


@blueprint.post("/<request_id>/logout")
@documented(303, answer_type="text/html", public=True, tag="pages",
            errors=[(403, "the form was not sent from this host's own page")])
def logout(request_id: str) -> Any:
    job_id = _job_id(request_id)
    _require_same_origin()
    response = redirect(url_for(".job_page", request_id=job_id), 303)
    _forget_key(response)
    return _page(response)


@blueprint.context_processor
def _formatting() -> dict[str, Any]:
    return {"when": when}


def when(stamp: str | None) -> str:
    """An ISO timestamp of the payload as people read it: to the second, in UTC."""
    if not stamp:
        return ""
    return dt.datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def error_bars(errors_by_code: dict[str, int]) -> list[dict[str, Any]]:
    """The chart's bars, most frequent code first, each with its width against the longest
    (percent) and what to do about it."""
    longest = max(errors_by_code.values(), default=0)
    return [{"code": code, "count": count,
             "width": round(100.0 * count / longest, 1) if longest else 0.0,
             "hint": INVALID_HINTS.get(code) or hint_for(code, None)}
            for code, count in sorted(errors_by_code.items(), key=lambda item: (-item[1],
                                                                               item[0]))]


def _job_id(request_id: str) -> str:
    if not REQUEST_ID.fullmatch(request_id):
        abort(404)
    return request_id


def _team_for(key: str) -> int | None:
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    # The same cache as the API's: a revoked key stops opening the page within a second.
    return current_app.extensions["mailconnect.keys"].team_for_key(key)


def _require_same_origin() -> None:
    origin = request.headers.get("Origin", "null")
    if origin == "null":
        # A browser sends no origin, or "null", when a referrer policy hides it; it still
        # says where the request came from in Sec-Fetch-Site, which no page can set.
        same = request.headers.get("Sec-Fetch-Site") == "same-origin"
    else:
        # The host only, not the scheme: behind a proxy that ends TLS the request arrives as
        # http while the browser's origin is https.
        same = urlsplit(origin).netloc.lower() == request.host.lower()
    if not same:
        abort(403)


def _forget_key(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict",
                           secure=request.is_secure)


def _login_form(job_id: str, error: str | None) -> Response:
    response = _page(render_template("login.html", job_id=job_id, error=error))
    response.status_code = 401 if error else 200
    return response


def _too_many(count: Count) -> Response:
    response = _error_page(
        429, "Too many requests",
        f"This API key made more than {count.limit} {DESCRIPTION[Category.POLL]}. This page "
        f"tries again in {count.reset_in} s.", refresh=count.reset_in)
    response.headers.update(count.headers())
    response.headers["Retry-After"] = str(count.reset_in)
    return response


def _error_page(status: int, title: str, message: str, refresh: int | None = None) -> Response:
    # A logged-in visitor may have the wrong team's key: let them forget it from here.
    job_id = (request.view_args or {}).get("request_id", "")
    can_logout = bool(request.cookies.get(COOKIE)) and REQUEST_ID.fullmatch(job_id)
    response = _page(render_template("error.html", title=title, message=message,
                                     refresh=refresh, job_id=job_id if can_logout else None))
    response.status_code = status
    return response


def _page(response: Response | str) -> Response:
    response = current_app.make_response(response)
    response.headers.update(SECURITY_HEADERS)
    # The page holds presigned links and a team's counts: no cache keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    if exc.code == 404:
        return _error_page(404, "Import not found", NOT_FOUND)
    if exc.code == 403:
        return _error_page(403, "Refused", "This form was not sent from this site's own page; "
                                           "reload the page and send it again.")
    return _error_page(exc.code or 500, exc.name, exc.description or exc.name)


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    if database_unavailable(exc):
        log.warning("database unavailable: %s", type(exc).__name__)
        response = _error_page(503, "Temporarily unavailable",
                               "The database cannot be reached right now. This page tries "
                               "again shortly.", refresh=DATABASE_RETRY_AFTER_SECONDS)
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    log.exception("unhandled error on the status page")
    return _error_page(500, "Internal error", "Something went wrong on our side.")
