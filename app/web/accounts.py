"""Account management, scoped to the caller's team."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from app.accounts.management import (
    ChangedConcurrently,
    ConnectResult,
    InvalidChange,
    account_view,
    connect_account,
    delete_account,
    get_account,
    list_accounts,
    protocol_view,
    retest_account,
    update_account,
)
from app.accounts.retest import RetestWrite
from app.accounts.slots import HostBusy, HostSlots
from app.importing.aliases import canonical_record, flatten_single_connect
from app.importing.rows import FieldError, detected_notes, validate_row
from app.jobs.loginquota import TEAM_LOGIN_QUOTA, QuotaExceeded
from app.services import Services
from app.web.auth import require_team
from app.web.errors import ApiError
from app.web.guards import json_body, whole_number
from app.web.ratelimit import Category, rate_limited

blueprint = Blueprint("accounts", __name__, url_prefix="/v1/email-accounts")
blueprint.before_request(require_team)

MAX_PAGE_SIZE = 200


@blueprint.url_value_preprocessor
def _account_ids_fit(_endpoint: str | None, values: dict | None) -> None:
    # Flask's int converter takes any size; the database's ids stop at 2**63 - 1.
    if values and values.get("account_id", 0) >= 2**63:
        raise ApiError(404, f"id: no account {values['account_id']} for this team")


def _services() -> Services:
    return current_app.extensions["mailconnect"]


def _slots(team_id: int | None = None) -> HostSlots:
    """The job runners' per-host slots, waited for up to one probe deadline; counted against
    the caller's team unless `team_id` names another (the OAuth callback has no caller)."""
    s = _services()
    queue = current_app.extensions["mailconnect.queue"]
    return HostSlots(s.gate, s.settings.probe_timeout_seconds,
                     on_woken=getattr(queue, "wake_rows", None),
                     team_id=g.team_id if team_id is None else team_id,
                     quota=s.login_quota)


@blueprint.errorhandler(HostBusy)
def _host_busy(exc: HostBusy):
    response = jsonify({"message": f"host_busy: {exc}", "errorCode": "host_busy",
                        "hosts": list(exc.hosts), "retryAfter": exc.retry_after})
    response.status_code = 503
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@blueprint.errorhandler(QuotaExceeded)
def _quota_exceeded(exc: QuotaExceeded):
    response = jsonify({"message": f"{TEAM_LOGIN_QUOTA}: {exc}", "errorCode": TEAM_LOGIN_QUOTA,
                        "retryAfter": exc.retry_after})
    response.status_code = 429
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _not_found(account_id: int) -> ApiError:
    return ApiError(404, f"id: no account {account_id} for this team")


def _json_object() -> dict:
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type: must be application/json")
    body = json_body(request.get_data())
    if not isinstance(body, dict):
        raise ApiError(422, "body: must be a JSON object")
    return body


def _invalid(errors: list[FieldError]) -> ApiError:
    return ApiError(422, "; ".join(f"{e.field}: {e.message}" for e in errors),
                    [e.as_dict() for e in errors])


def connect_response(result: ConnectResult, message: str, **extra: object):
    return jsonify({"message": message, "payload": {
        "id": result.account_id,
        "email": result.email,
        "status": int(result.probe.verified),
        "smtpConnection": protocol_view(result.probe.smtp, result.provider),
        "imapConnection": protocol_view(result.probe.imap, result.provider),
        **extra,
    }})


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    number = whole_number(raw, low, high)
    if number is None:
        raise ApiError(422, f"{name}: must be a whole number from {low} to {high}")
    return number


@blueprint.post("/smtp-imap/connect")
@rate_limited(Category.SINGLE)
def connect_one():
    """Saleshandy's single connect: test now, save whatever the result (unless `test`)."""
    s = _services()
    body = _json_object()
    dry_run = body.pop("test", False)
    if not isinstance(dry_run, bool):
        raise ApiError(422, "test: must be true or false")
    record, ignored = canonical_record(flatten_single_connect(body))
    checked = validate_row(record, mx=s.mx_resolvers(), policy=s.settings.host_policy)
    if isinstance(checked, list):
        raise _invalid(checked)
    result = connect_account(s.db, s.cipher, s.clock, s.prober, g.team_id, checked,
                             dry_run=dry_run, slots=_slots(), tokens=s.tokens)
    message = ("Email account tested; nothing was saved." if dry_run
               else "Email account connected." if result.probe.verified
               else "Email account saved, but its connection failed.")
    filled = [*checked.filled, *detected_notes(result.probe)]
    extra = {"filledIn": filled} if filled else {}
    if ignored:
        extra["ignoredFields"] = ignored
    return connect_response(result, message, **extra)


@blueprint.get("")
@rate_limited(Category.POLL)
def index():
    page = _int_arg("page", 1, 1, 10**6)
    limit = _int_arg("limit", 50, 1, MAX_PAGE_SIZE)
    status = _int_arg("status", None, 0, 1)
    result = list_accounts(_services().db, g.team_id, page, limit, status=status,
                           provider=request.args.get("provider") or None,
                           search=request.args.get("search") or None)
    return jsonify({"payload": {
        "accounts": [account_view(a) for a in result.accounts],
        "page": page, "limit": limit, "total": result.total,
    }})


@blueprint.get("/<int:account_id>")
@rate_limited(Category.POLL)
def show(account_id: int):
    account = get_account(_services().db, g.team_id, account_id)
    if account is None:
        raise _not_found(account_id)
    return jsonify({"payload": account_view(account)})


@blueprint.delete("/<int:account_id>")
@rate_limited(Category.MANAGE)
def destroy(account_id: int):
    if not delete_account(_services().db, g.team_id, account_id):
        raise _not_found(account_id)
    return jsonify({"message": "Email account deleted.", "payload": {"id": account_id}})


_DELETED_DURING_TEST = "id: account {} was deleted while it was being tested"
_STALE = ("The account's settings were changed while this test ran, so its stored result is "
          "not from this test: it is the newer settings' (see GET /v1/email-accounts/{}).")


@blueprint.post("/<int:account_id>/test")
@rate_limited(Category.SINGLE)
def test(account_id: int):
    """Re-test the account as it is now, with its stored credentials, and store only the
    result (never the settings: a change made meanwhile is kept).

    404 when the account does not exist or was deleted during the test (it stays deleted).
    When its settings changed during the test, the answer is this test's result with
    `"stale": true`, and the stored result stays the newer settings'.
    """
    s = _services()
    result = retest_account(s.db, s.cipher, s.clock, s.prober, g.team_id, account_id,
                            slots=_slots(), tokens=s.tokens)
    if result is None:
        raise _not_found(account_id)
    if result.written == RetestWrite.DELETED:
        raise ApiError(404, _DELETED_DURING_TEST.format(account_id))
    message = _STALE.format(account_id) if result.stale else "Email account tested."
    return connect_response(result, message, stale=result.stale)


@blueprint.patch("/<int:account_id>")
@rate_limited(Category.SINGLE)
def change(account_id: int):
    """Change an account; the email cannot change.

    Sending settings change in place: no re-test, the result stays. Any other field (a
    connection setting, a password, a name or the provider) makes new settings: they are
    validated, then saved with the account marked untested (status 0, no per-protocol
    results, lastTestedAt null: the old verdict was about the old settings), then tested,
    and the result is stored if they are still the account's settings. If another change
    landed during the test, the answer says `"stale": true` and shows the account as it is.
    Two PATCHes that race both apply, in the order they are written; each merges into the
    account as it is when it writes, so neither reverts the other's fields.
    503 host_busy (nothing changed) when the new hosts have no free test slot; 429
    team_login_quota (nothing changed either: send the PATCH again after Retry-After) when
    the team has spent its TEAM_MAX_LOGINS_PER_HOUR.
    """
    s = _services()
    try:
        updated = update_account(s.db, s.cipher, s.clock, s.prober, g.team_id, account_id,
                                 _json_object(), slots=_slots(),
                                 policy=s.settings.host_policy, tokens=s.tokens)
    except InvalidChange as exc:
        raise _invalid(exc.errors) from None
    except ChangedConcurrently:
        raise ApiError(409, f"id: account {account_id} kept changing while this change was "
                            "written; send it again") from None
    if updated is None or (updated.account is None and updated.tested is None):
        raise _not_found(account_id)
    if updated.tested is None:
        return jsonify({"message": "Email account updated.",
                        "payload": account_view(updated.account)})
    if updated.account is None or updated.tested.written == RetestWrite.DELETED:
        raise ApiError(404, _DELETED_DURING_TEST.format(account_id))
    stale = updated.tested.stale
    message = ("Email account updated, but changed again while it was tested; it shows the "
               "newer change." if stale else "Email account updated and re-tested.")
    return jsonify({"message": message, "payload": {**account_view(updated.account),
                                                    "stale": stale}})
