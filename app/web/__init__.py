"""The web API. `create_app()` only wires things together."""

from __future__ import annotations

from flask import Flask, jsonify

from app.config import Settings, load_settings
from app.jobs.queue import JobQueue
from app.services import Services, build_services
from app.teams import KeyCache
from app.web import accounts, connect, oauth
from app.web.errors import register_error_handlers
from app.web.ops import install_ops
from app.web.ratelimit import install_rate_limits


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    queue: JobQueue | None = None,
) -> Flask:
    settings = settings or (services.settings if services else load_settings())
    services = services or build_services(settings)
    if queue is None:
        from workers.publisher import CeleryJobQueue  # the web process only publishes

        queue = CeleryJobQueue.from_settings(settings)

    app = Flask("mailconnect")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    app.extensions["mailconnect"] = services
    app.extensions["mailconnect.queue"] = queue
    app.extensions["mailconnect.keys"] = KeyCache(services.db, clock=services.clock)
    register_error_handlers(app)
    app.register_blueprint(connect.blueprint)
    app.register_blueprint(accounts.blueprint)
    app.register_blueprint(oauth.start_blueprint)
    app.register_blueprint(oauth.callback_blueprint)
    install_rate_limits(app, settings)
    install_ops(app, settings, services)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
