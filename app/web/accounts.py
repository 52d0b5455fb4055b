"""Account management, scoped to the caller's team."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

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
from app.accounts.slots import HostBusy
from app.importing.aliases import canonical_record, flatten_single_connect, sent_names
from app.importing.rows import detected_notes, validate_row
from app.jobs.loginquota import TEAM_LOGIN_QUOTA, QuotaExceeded
from app.web.auth import require_team
from app.web.common import invalid, json_object, query_int, services, slots
from app.web.errors import ApiError, error_response
from app.web.openapi import documented
from app.web.ratelimit import Category, rate_limited
from app.web.schemas import (
    AccountAnswer,
    AccountChange,
    AccountChanged,
    AccountsAnswer,
    AccountsQuery,
    ConnectAnswer,
    Deleted,
    SingleConnectBody,
)

blueprint = Blueprint("accounts", __name__, url_prefix="/v1/email-accounts")
blueprint.before_request(require_team)

@blueprint.url_value_preprocessor
def _account_ids_fit(_endpoint: str | None, values: dict | None) -> None:
    # Flask's int converter takes any size; the database's ids stop at 2**63 - 1.
    if values and values.get("account_id", 0) >= 2**63:
        raise ApiError(404, f"id: no account {values['account_id']} for this team")


@blueprint.errorhandler(HostBusy)
def _host_busy(exc: HostBusy):
    return error_response(503, f"host_busy: {exc}", [{"field": "host", "message": str(exc)}],
                          retry_after=exc.retry_after, errorCode="host_busy",
                          hosts=list(exc.hosts), retryAfter=exc.retry_after)


@blueprint.errorhandler(QuotaExceeded)
def _quota_exceeded(exc: QuotaExceeded):
    # The quota is the team's, and the API key names the team.
    return error_response(429, f"{TEAM_LOGIN_QUOTA}: {exc}",
                          [{"field": "x-api-key", "message": str(exc)}],
                          retry_after=exc.retry_after, errorCode=TEAM_LOGIN_QUOTA,
                          retryAfter=exc.retry_after)


def _not_found(account_id: int) -> ApiError:
    return ApiError(404, f"id: no account {account_id} for this team")


def connect_response(result: ConnectResult, message: str, **extra: object):
    return jsonify({"message": message, "payload": {
        "id": result.account_id,
        "email": result.email,
        "status": int(result.probe.verified),
        "smtpConnection": protocol_view(result.probe.smtp, result.provider),
        "imapConnection": protocol_view(result.probe.imap, result.provider),
        **extra,
    }})


SINGLE_ERRORS = [400, 413, 415, (422, "a field is invalid: one entry per field, named as sent "
                                      "(`payload.smtp.port`)"),
                 (429, "rate limited, or the team's login quota is spent (team_login_quota)"),
                 (503, "no test slot of the host freed in time (host_busy), or the database "
                       "cannot be reached; nothing changed")]


@blueprint.post("/smtp-imap/connect")
@documented(200, ConnectAnswer, json=SingleConnectBody, errors=SINGLE_ERRORS)
@rate_limited(Category.SINGLE)
def connect_one():
    """Saleshandy's single connect: test now, save whatever the result (unless `test`)."""
    s = services()
    body = json_object()
    dry_run = body.pop("test", False)
    if not isinstance(dry_run, bool):
        raise ApiError(422, "test: must be true or false")
    record, ignored = canonical_record(flatten_single_connect(body))
    checked = validate_row(record, mx=s.mx_resolvers(), policy=s.settings.host_policy)
    if isinstance(checked, list):
        raise invalid(checked, sent_names(body))
    result = connect_account(s.db, s.cipher, s.clock, s.prober, g.team_id, checked,
                             dry_run=dry_run, slots=slots(), tokens=s.tokens)
    message = ("Email account tested; nothing was saved." if dry_run
               else _DELETED_DURING_CONNECT if result.written == RetestWrite.DELETED
               else _CHANGED_DURING_CONNECT.format(result.account_id) if result.stale
               else "Email account connected." if result.probe.verified
               else "Email account saved, but its connection failed.")
    filled = [*checked.filled, *detected_notes(result.probe)]
    extra: dict[str, object] = {"filledIn": filled} if filled else {}
    if result.stale:
        extra["stale"] = True
    if ignored:
        extra["ignoredFields"] = ignored
    return connect_response(result, message, **extra)


@blueprint.get("")
@documented(200, AccountsAnswer, query=AccountsQuery, errors=[
    (422, "page, limit or status is out of range")])
@rate_limited(Category.POLL)
def index():
    """The team's accounts, by id."""
    page = query_int(AccountsQuery, "page")
    limit = query_int(AccountsQuery, "limit")
    status = query_int(AccountsQuery, "status")
    result = list_accounts(services().db, g.team_id, page, limit, status=status,
                           provider=request.args.get("provider") or None,
                           search=request.args.get("search") or None)
    return jsonify({"payload": {
        "accounts": [account_view(a) for a in result.accounts],
        "page": page, "limit": limit, "total": result.total,
    }})


@blueprint.get("/<int:account_id>")
@documented(200, AccountAnswer, errors=[404])
@rate_limited(Category.POLL)
def show(account_id: int):
    """One account: settings, last results; never a password."""
    account = get_account(services().db, g.team_id, account_id)
    if account is None:
        raise _not_found(account_id)
    return jsonify({"payload": account_view(account)})


@blueprint.delete("/<int:account_id>")
@documented(200, Deleted, errors=[404])
@rate_limited(Category.MANAGE)
def destroy(account_id: int):
    """Delete an account."""
    if not delete_account(services().db, services().clock, g.team_id, account_id):
        raise _not_found(account_id)
    return jsonify({"message": "Email account deleted.", "payload": {"id": account_id}})


_DELETED_DURING_TEST = "id: account {} was deleted while it was being tested"
_DELETED_DURING_CONNECT = (
    "The account was deleted while this test ran: it stays deleted, and this test's result "
    "was not saved. Connect it again to add it back.")
_CHANGED_DURING_CONNECT = (
    "The account was changed while this test ran: the newer settings were kept, and these "
    "(with this test's result) were not saved (see GET /v1/email-accounts/{}).")
_STALE = ("The account's settings were changed while this test ran, so its stored result is "
          "not from this test: it is the newer settings' (see GET /v1/email-accounts/{}).")


@blueprint.post("/<int:account_id>/test")
@documented(200, ConnectAnswer, errors=[(404, "no such account, or it was deleted during "
                                               "the test"), *SINGLE_ERRORS[4:]])
@rate_limited(Category.SINGLE)
def test(account_id: int):
    """Re-test the account as it is now, with its stored credentials, and store only the
    result (never the settings: a change made meanwhile is kept).

    404 when the account does not exist or was deleted during the test (it stays deleted).
    When its settings changed during the test, the answer is this test's result with
    `"stale": true`, and the stored result stays the newer settings'.
    """
    s = services()
    result = retest_account(s.db, s.cipher, s.clock, s.prober, g.team_id, account_id,
                            slots=slots(), tokens=s.tokens)
    if result is None:
        raise _not_found(account_id)
    if result.written == RetestWrite.DELETED:
        raise ApiError(404, _DELETED_DURING_TEST.format(account_id))
    message = _STALE.format(account_id) if result.stale else "Email account tested."
    return connect_response(result, message, stale=result.stale)


@blueprint.patch("/<int:account_id>")
@documented(200, AccountChanged, json=AccountChange, errors=[
    *SINGLE_ERRORS, (404, "no such account, or it was deleted during the test"),
    (409, "the account kept changing while this change was written; send it again")])
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
    s = services()
    try:
        updated = update_account(s.db, s.cipher, s.clock, s.prober, g.team_id, account_id,
                                 json_object(), slots=slots(),
                                 policy=s.settings.host_policy, tokens=s.tokens)
    except InvalidChange as exc:
        raise invalid(exc.errors) from None
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
