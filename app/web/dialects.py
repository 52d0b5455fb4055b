"""Smartlead's, MailReach's and lemlist's single-connect endpoints: thin adapters over the same
validation and `connect_account` as our own single connect (`app/web/accounts.py`).

Each vendor keeps its own URL, key, request fields, answer and error shapes (mapped in
`app/dialects/`), so a team moving from one only changes the base URL. Keys are looked up like
`x-api-key` (`authenticate`), and each call counts as a single-account test for the rate limits
and the team's login quota.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from flask.wrappers import Response
from werkzeug.exceptions import RequestEntityTooLarge

from app.accounts.management import (
    ChangedConcurrently,
    InvalidChange,
    account_view,
    connect_account,
    get_account,
    update_account,
)
from app.accounts.slots import HostBusy
from app.dialects import lemlist, mailreach, smartlead
from app.dialects.mapping import Mapped, detail, message_of, to_record, vendor_errors
from app.importing.rows import FieldError, detected_notes, validate_row
from app.jobs.loginquota import TEAM_LOGIN_QUOTA, QuotaExceeded
from app.web import schemas
from app.web.auth import authenticate, presented_key
from app.web.common import services, slots
from app.web.errors import ApiError
from app.web.guards import json_body
from app.web.openapi import API_KEY_HEADER, API_KEY_QUERY, BASIC, documented
from app.web.ratelimit import Category, rate_limited

# Far beyond any account id (ids stop at 2**63 - 1): Smartlead's `id` must fit one.
_MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Vendor:
    module: ModuleType  # DIALECT, VALIDATION_STATUS, error_body(), answer()
    key: Callable[[], str]  # the API key the request carries, "" when none
    key_field: str  # where the key goes, named in 401 errors
    key_hint: str


def _error(vendor: Vendor, status: int, message: str,
           errors: list[FieldError] | None = None) -> Response:
    response = jsonify(vendor.module.error_body(message, errors))
    response.status_code = status
    return response


def _blueprint(name: str, vendor: Vendor) -> Blueprint:
    """A vendor's blueprint: its authentication, and every error in its shape."""
    blueprint = Blueprint(name, __name__)

    @blueprint.before_request
    def _authenticate() -> Response | None:
        key = vendor.key()
        if not key:
            return _error(vendor, 401, f"{vendor.key_field}: is required ({vendor.key_hint})")
        if not authenticate(key):
            return _error(vendor, 401, f"{vendor.key_field}: is not a valid API key (unknown "
                                       "or revoked)")
        return None

    @blueprint.errorhandler(ApiError)
    def _refused(exc: ApiError) -> Response:
        return _error(vendor, exc.status, exc.message,
                      [FieldError(e["field"], e["message"]) for e in exc.errors])

    @blueprint.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> Response:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return _error(vendor, 413, f"body: is larger than the limit of {limit} bytes")

    @blueprint.errorhandler(HostBusy)
    def _host_busy(exc: HostBusy) -> Response:
        return _retry_later(_error(vendor, 503, f"host_busy: {exc}"), exc.retry_after)

    @blueprint.errorhandler(QuotaExceeded)
    def _quota(exc: QuotaExceeded) -> Response:
        return _retry_later(_error(vendor, 429, f"{TEAM_LOGIN_QUOTA}: {exc}"), exc.retry_after)

    return blueprint


def _retry_later(response: Response, seconds: int) -> Response:
    response.headers["Retry-After"] = str(seconds)
    return response


SMARTLEAD = Vendor(smartlead, lambda: request.args.get(smartlead.KEY_PARAMETER, "").strip(),
                   smartlead.KEY_PARAMETER, "?api_key=YOUR_KEY")
MAILREACH = Vendor(mailreach, presented_key, mailreach.KEY_HEADER,
                   "X-Api-Key: YOUR_KEY header")
LEMLIST = Vendor(lemlist, lambda: lemlist.key_from_basic(request.headers.get("Authorization", "")),
                 lemlist.KEY_HEADER, "HTTP Basic, with the API key as the password")

smartlead_blueprint = _blueprint("smartlead", SMARTLEAD)
mailreach_blueprint = _blueprint("mailreach", MAILREACH)
lemlist_blueprint = _blueprint("lemlist", LEMLIST)
blueprints = (smartlead_blueprint, mailreach_blueprint, lemlist_blueprint)


@smartlead_blueprint.post("/api/v1/email-accounts/save")
@documented(200, schemas.SmartleadAnswer, json=schemas.vendor_body(smartlead.DIALECT),
            error_model=schemas.OkFalseError, security=[API_KEY_QUERY], tag="smartlead", errors=[
                (400, "a login failed: the account is saved all the same (status 0)"),
                (404, "`id` names no account of this team"), 413, 415, 422])
@rate_limited(Category.SINGLE)
def smartlead_save() -> tuple[Response, int]:
    """Create, or with `id` update, one account (Smartlead's save)."""
    body = _json_object()
    account_id = _smartlead_id(body)
    mapped = _mapped(SMARTLEAD, body)
    if account_id is None:
        return _connect(SMARTLEAD, mapped)
    return _update(SMARTLEAD, mapped, account_id)


@mailreach_blueprint.post("/v1/imap_auth")
@mailreach_blueprint.post("/api/v1/imap_auth")  # the path MailReach's own example calls
@documented(200, schemas.MailReachAnswer, json=schemas.vendor_body(mailreach.DIALECT),
            error_model=schemas.MailReachError, security=[API_KEY_HEADER], tag="mailreach",
            errors=[413, 415, 422])
@rate_limited(Category.SINGLE)
def mailreach_imap_auth() -> tuple[Response, int]:
    """Create or update (by email) one account by authenticating it (MailReach's imap_auth)."""
    return _connect(MAILREACH, _mapped(MAILREACH, _json_object()))


@lemlist_blueprint.post("/api/user/email-accounts")
@documented(200, schemas.LemlistAnswer, json=schemas.vendor_body(lemlist.DIALECT),
            error_model=schemas.OkFalseError, security=[BASIC], tag="lemlist", errors=[
                (400, "a field is invalid, or a login failed: the account is saved all the "
                      "same (status 0), and the answer carries its id"), 413, 415])
@rate_limited(Category.SINGLE)
def lemlist_connect() -> tuple[Response, int]:
    """Connect one custom SMTP/IMAP account (lemlist's email-accounts)."""
    return _connect(LEMLIST, _mapped(LEMLIST, _json_object()))


def _json_object() -> Any:
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type: must be application/json")
    return json_body(request.get_data())


def _invalid(vendor: Vendor, errors: list[FieldError]) -> ApiError:
    return ApiError(vendor.module.VALIDATION_STATUS, message_of(errors),
                    [e.as_dict() for e in errors])


def _mapped(vendor: Vendor, body: Any) -> Mapped:
    mapped = to_record(vendor.module.DIALECT, body)
    if isinstance(mapped, list):
        raise _invalid(vendor, mapped)
    return mapped


def _smartlead_id(body: Any) -> int | None:
    value = body.get(smartlead.ID) if isinstance(body, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ID:
        raise _invalid(SMARTLEAD, [FieldError(smartlead.ID, "must be the id of an email "
                                                            "account, or null for a new one")])
    return value


def _connect(vendor: Vendor, mapped: Mapped) -> tuple[Response, int]:
    """Our single connect: validate, test now, save whatever the result."""
    s = services()
    checked = validate_row(mapped.record, mx=s.mx_resolvers(), policy=s.settings.host_policy)
    if isinstance(checked, list):
        raise _invalid(vendor, vendor_errors(vendor.module.DIALECT, mapped, checked))
    result = connect_account(s.db, s.cipher, s.clock, s.prober, g.team_id, checked,
                             slots=slots(), tokens=s.tokens)
    filled = [*checked.filled, *detected_notes(result.probe)]
    return _answer(vendor, result.account_id, mapped, filled, updated=False)


def _update(vendor: Vendor, mapped: Mapped, account_id: int) -> tuple[Response, int]:
    """Our PATCH of a stored account: merged, validated, re-tested, fenced by version."""
    s = services()
    try:
        updated = update_account(s.db, s.cipher, s.clock, s.prober, g.team_id, account_id,
                                 mapped.record, slots=slots(),
                                 policy=s.settings.host_policy, tokens=s.tokens)
    except InvalidChange as exc:
        raise _invalid(vendor, vendor_errors(vendor.module.DIALECT, mapped, exc.errors)) \
            from None
    except ChangedConcurrently:
        raise ApiError(409, f"id: account {account_id} kept changing while this save was "
                            "written; send it again") from None
    if updated is None or updated.account is None:
        raise _invalid(vendor, [FieldError("id", f"no email account {account_id} for this "
                                                 "API key")])
    filled = detected_notes(updated.tested.probe) if updated.tested else []
    return _answer(vendor, account_id, mapped, filled, updated=True)


def _answer(vendor: Vendor, account_id: int | None, mapped: Mapped, filled: list[str],
            updated: bool) -> tuple[Response, int]:
    # The stored account, read back: every vendor's answer describes what was saved.
    account = get_account(services().db, g.team_id, account_id) if account_id else None
    if account is None:
        raise ApiError(404, f"id: account {account_id} was deleted while it was being saved")
    view = account_view(account)
    status, body = vendor.module.answer(view, updated, detail(view, mapped.ignored, filled))
    return jsonify(body), status
