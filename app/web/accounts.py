"""Account management, scoped to the caller's team."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from app.accounts.service import (
    ConnectResult,
    account_view,
    connect_account,
    delete_account,
    get_account,
    list_accounts,
    protocol_view,
    retest_account,
    update_sending,
)
from app.importing.aliases import canonical_record, flatten_single_connect
from app.importing.rows import SENDING_FIELDS, FieldError, validate_row
from app.services import Services
from app.web.auth import require_team
from app.web.errors import ApiError

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


def _json_object() -> dict:
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type: must be application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400 if body is None else 422, "body: must be a JSON object")
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
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(422, f"{name}: must be a whole number from {low} to {high}")
    return int(raw)


@blueprint.post("/smtp-imap/connect")
def connect_one():
    """Saleshandy's single connect: test now, save whatever the result (unless `test`)."""
    s = _services()
    body = _json_object()
    dry_run = body.pop("test", False)
    if not isinstance(dry_run, bool):
        raise ApiError(422, "test: must be true or false")
    record, ignored = canonical_record(flatten_single_connect(body))
    checked = validate_row(record, mx=s.mx_resolvers())
    if isinstance(checked, list):
        raise _invalid(checked)
    result = connect_account(s.db, s.cipher, s.clock, s.prober, g.team_id, checked,
                             dry_run=dry_run)
    message = ("Email account tested; nothing was saved." if dry_run
               else "Email account connected." if result.probe.verified
               else "Email account saved, but its connection failed.")
    extra = {"filledIn": list(checked.filled)} if checked.filled else {}
    if ignored:
        extra["ignoredFields"] = ignored
    return connect_response(result, message, **extra)


@blueprint.get("")
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
def show(account_id: int):
    account = get_account(_services().db, g.team_id, account_id)
    if account is None:
        raise ApiError(404, f"id: no account {account_id} for this team")
    return jsonify({"payload": account_view(account)})


@blueprint.delete("/<int:account_id>")
def destroy(account_id: int):
    if not delete_account(_services().db, g.team_id, account_id):
        raise ApiError(404, f"id: no account {account_id} for this team")
    return jsonify({"message": "Email account deleted.", "payload": {"id": account_id}})


@blueprint.post("/<int:account_id>/test")
def test(account_id: int):
    s = _services()
    result = retest_account(s.db, s.cipher, s.clock, s.prober, g.team_id, account_id)
    if result is None:
        raise ApiError(404, f"id: no account {account_id} for this team")
    return connect_response(result, "Email account tested.")


@blueprint.patch("/<int:account_id>")
def change(account_id: int):
    """Sending settings change in place; any connection setting re-tests the account."""
    s = _services()
    body = _json_object()
    account = get_account(s.db, g.team_id, account_id)
    if account is None:
        raise ApiError(404, f"id: no account {account_id} for this team")
    if "smtpEmailAddress" in body and str(body["smtpEmailAddress"]).lower() != account.email:
        raise ApiError(422, "smtpEmailAddress: cannot be changed; connect the new address "
                            "as a new account")
    record = _stored_record(account, s)
    record.update(body)
    checked = validate_row(record)
    if isinstance(checked, list):
        raise _invalid(checked)
    connection_changed = any(k not in SENDING_FIELDS for k in body)
    if not connection_changed:
        update_sending(s.db, s.clock, g.team_id, account_id, checked.sending)
        return jsonify({"message": "Email account updated.",
                        "payload": account_view(get_account(s.db, g.team_id, account_id))})
    connect_account(s.db, s.cipher, s.clock, s.prober, g.team_id, checked)
    if checked.sending:
        update_sending(s.db, s.clock, g.team_id, account_id, checked.sending)
    return jsonify({"message": "Email account updated and re-tested.",
                    "payload": account_view(get_account(s.db, g.team_id, account_id))})


def _stored_record(account, services: Services) -> dict:
    secrets = services.cipher.decrypt(account.credentials)
    record = {
        "emailServiceProvider": account.provider, "fromFirstName": account.from_first_name,
        "fromLastName": account.from_last_name, "fromName": account.from_name,
        "smtpEmailAddress": account.email, "smtpUserName": account.smtp_username,
        "smtpPassword": secrets["smtp"].reveal(), "smtpHost": account.smtp_host,
        "smtpPort": account.smtp_port, "smtpEncryption": account.smtp_encryption,
        "smtpOnly": account.smtp_only,
    }
    if not account.smtp_only:
        record.update(imapEmailAddress=account.imap_email, imapUserName=account.imap_username,
                      imapPassword=secrets["imap"].reveal(), imapHost=account.imap_host,
                      imapPort=account.imap_port, imapEncryption=account.imap_encryption)
    return {k: v for k, v in record.items() if v is not None}
