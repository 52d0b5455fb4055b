"""Operators' endpoints: /metrics (Prometheus), /readyz (dependencies), and the log context
of every request. None needs an API key or is rate limited: monitoring must work while the
API is refusing callers."""

from __future__ import annotations

import hmac
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from app import logs, metrics
from app.config import Settings
from app.health import ReadinessProbe, standard_checks
from app.services import Services
from app.state_metrics import StateCollector
from app.web.errors import error_body, error_response
from app.web.openapi import documented
from app.web.schemas import Readiness
from workers.factory import CONTROL_QUEUE, PROBE_QUEUE

blueprint = Blueprint("ops", __name__)


def install_ops(app: Flask, settings: Settings, services: Services) -> None:
    metrics.install_prometheus()  # single connects and /test probe in the web process
    client = redis.Redis.from_url(settings.redis_url,
                                  socket_timeout=settings.readiness_timeout_seconds,
                                  socket_connect_timeout=settings.readiness_timeout_seconds)
    app.extensions["mailconnect.state_metrics"] = StateCollector(
        services.db, client, queues=(PROBE_QUEUE, CONTROL_QUEUE))
    app.extensions["mailconnect.readiness"] = ReadinessProbe(
        standard_checks(settings, services.db), timeout=settings.readiness_timeout_seconds)
    app.before_request(_enter_log_context)
    app.teardown_request(_leave_log_context)
    app.register_blueprint(blueprint)


def _enter_log_context() -> None:
    # The ids in the URL; a handler adds the ones it learns (logs.bind).
    args: dict[str, Any] = request.view_args or {}
    g.log_token = logs.enter(request_id=args.get("request_id"),
                             account_id=args.get("account_id"))


def _leave_log_context(_exc: BaseException | None = None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        # gunicorn writes the access line after this: it finds the ids in the environ.
        request.environ[logs.ACCESS_CONTEXT] = logs.current_context()
        logs.leave(token)


@blueprint.get("/metrics")
@documented(200, answer_type="text/plain", public=True, tag="service", errors=[
    (401, "METRICS_TOKEN is set and the bearer token does not match")])
def scrape() -> Response:
    token = current_app.extensions["mailconnect"].settings.metrics_token
    if token is not None and not _bearer_matches(token.get_secret_value()):
        response = error_response(401, "Authorization: a valid METRICS_TOKEN bearer token is "
                                       "required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition(
        [current_app.extensions["mailconnect.state_metrics"]])
    return Response(body, content_type=content_type)


def _bearer_matches(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


@blueprint.get("/readyz")
@documented(200, Readiness, public=True, tag="service", errors=[
    (503, "a dependency (database, redis, bucket) is not ready: named in `errors`")])
def readyz() -> Response:
    readiness = current_app.extensions["mailconnect.readiness"].run()
    checks = {name: {"ok": r.ok, "ms": r.milliseconds, **({"error": r.error} if r.error else {})}
              for name, r in readiness.checks.items()}
    if readiness.ready:
        return jsonify({"status": "ready", "checks": checks})
    response = jsonify(error_body(
        "; ".join(f"{name}: not ready" for name in readiness.failed),
        [{"field": name, "message": checks[name].get("error", "not ready")}
         for name in readiness.failed],
        status="unavailable", failed=readiness.failed, checks=checks))
    response.status_code = 503
    return response
