"""OAuth2 browser consent: start (API key) and the provider's callback (the state is the
credential)."""

from __future__ import annotations

import logging

from flask import Blueprint, g, jsonify, redirect, request

from app.accounts.management import connect_account, save_untested
from app.accounts.slots import HostBusy
from app.credentials import CredentialError, Secret
from app.importing.rows import validate_row
from app.jobs.loginquota import TEAM_LOGIN_QUOTA, QuotaExceeded
from app.oauth.apps import load_oauth_app
from app.oauth.consent import (
    SERVER_FIELDS,
    ConsentError,
    check_start,
    claim_consent,
    consent_row,
    exchange_code,
    start_consent,
    with_query,
)
from app.oauth.tokens import RefreshFailed
from app.web.auth import require_team
from app.web.common import invalid, json_object, services, slots
from app.web.errors import ApiError
from app.web.openapi import documented
from app.web.ratelimit import Category, rate_limited
from app.web.schemas import OAuthCallbackQuery, OAuthStartBody, OAuthStarted

log = logging.getLogger(__name__)

start_blueprint = Blueprint("oauth_start", __name__, url_prefix="/v1/email-accounts/oauth")
start_blueprint.before_request(require_team)
# No API key: the browser comes back from the provider; the single-use state authenticates.
# Not rate limited per key for the same reason: an unknown state costs one indexed UPDATE.
callback_blueprint = Blueprint("oauth_callback", __name__)


@start_blueprint.post("/start")
@documented(200, OAuthStarted, json=OAuthStartBody, errors=[400, 413, 415, 422])
@rate_limited(Category.MANAGE)
def start():
    """Start a browser consent: send the person to `authorizeUrl`."""
    s = services()
    body = json_object()
    provider, email, redirect_url = (body.get(k) for k in ("provider", "email", "redirectUrl"))
    server = {k: body[k] for k in SERVER_FIELDS if body.get(k) not in (None, "")}
    errors = check_start(provider, email, server, redirect_url, s.settings.host_policy)
    if errors:
        raise invalid(errors)
    try:
        app = load_oauth_app(s.db, s.cipher, g.team_id, provider)
    except CredentialError as exc:
        raise ApiError(422, f"provider: the team's {provider} OAuth app secret cannot be "
                            f"read: {exc}") from None
    if app is None:
        raise ApiError(422, f"provider: no {provider} OAuth app is registered for this team "
                            "(mailconnect oauth-app set)")
    started = start_consent(s.db, s.cipher, s.clock, app, redirect_url, s.settings.oauth_callback,
                            email=email or None, server=server,
                            custom_scope=s.settings.oauth_custom_scope)
    return jsonify({"payload": {"authorizeUrl": started.authorize_url,
                                "state": started.state}})


@callback_blueprint.get("/oauth/callback")
@documented(302, query=OAuthCallbackQuery, public=True, answer_headers={"Location": {
    "description": "the start's redirectUrl with accountId and status, or error",
    "schema": {"type": "string", "format": "uri"}}}, errors=[
    (400, "the state is unknown, expired or already used"),
    (503, "the database cannot be reached")])
def callback():
    """The provider sends the browser back here; the single-use state authenticates."""
    s = services()
    try:
        pending = claim_consent(s.db, s.cipher, s.clock, request.args.get("state", ""))
    except ConsentError as exc:
        raise ApiError(400, str(exc)) from None

    def back(**params: str):
        return redirect(with_query(pending.redirect_url, params), 302)

    if request.args.get("error"):
        # The person declined, or the provider refused: their words go back as they came.
        return back(error=request.args["error"][:200])
    code = request.args.get("code", "")
    if not code:
        return back(error="code_missing")
    app = load_oauth_app(s.db, s.cipher, pending.team_id, pending.provider)
    if app is None:
        return back(error="oauth_app_missing")
    try:
        tokens, claimed_email = exchange_code(
            app, pending, Secret(code), s.settings.oauth_callback, s.clock.now(),
            allow=s.settings.allow_networks)
    except RefreshFailed as exc:
        log.warning("OAuth consent of team %s: %s", pending.team_id, exc)  # scrubbed
        return back(error="token_exchange_failed")
    if pending.email and claimed_email and pending.email.lower() != claimed_email.lower():
        # The person consented as another mailbox than the one asked for: its tokens would be
        # saved under the wrong address.
        return back(error="email_mismatch")
    email = pending.email or claimed_email
    if not email:
        return back(error="email_unknown")
    checked = validate_row(consent_row(pending.provider, email, pending.server, tokens),
                           mx=s.mx_resolvers(), policy=s.settings.host_policy)
    if isinstance(checked, list):
        return back(error="invalid_account",
                    fields=",".join(sorted({e.field for e in checked})))
    account = checked.with_tokens(tokens)
    try:
        result = connect_account(s.db, s.cipher, s.clock, s.prober, pending.team_id, account,
                                 slots=slots(pending.team_id), tokens=s.tokens)
    except (HostBusy, QuotaExceeded) as exc:
        # The consent is spent and cannot be replayed: keep its tokens on an untested account,
        # so a /test later needs no new consent.
        account_id = save_untested(s.db, s.cipher, s.clock, pending.team_id, account)
        return back(accountId=str(account_id), status="0",
                    error="host_busy" if isinstance(exc, HostBusy) else TEAM_LOGIN_QUOTA)
    return back(accountId=str(result.account_id), status=str(int(result.probe.verified)))
