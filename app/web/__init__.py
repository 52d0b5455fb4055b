"""The web API. `create_app()` only wires things together."""

from __future__ import annotations

from flask import Flask, jsonify

from app.config import Settings, load_settings
from app.jobs.publisher import JobPublisher
from app.services import Services, build_services
from app.teams import KeyCache
from app.web import accounts, connect, dialects, oauth, pages
from app.web.errors import register_error_handlers
from app.web.openapi import documented, install_openapi
from app.web.ops import install_ops
from app.web.ratelimit import install_rate_limits
from app.web.schemas import Health


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    queue: JobPublisher | None = None,
) -> Flask:
    settings = settings or (services.settings if services else load_settings())
    services = services or build_services(settings)
    if queue is None:
        from workers.publisher import CeleryPublisher  # the web process only publishes

        queue = CeleryPublisher.from_settings(settings)

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
    for blueprint in dialects.blueprints:
        app.register_blueprint(blueprint)
    app.register_blueprint(pages.blueprint)
    install_ops(app, settings, services)

    @app.get("/healthz")
    @documented(200, Health, public=True, tag="service")
    def healthz():
        """Liveness: 200 while the web process is up."""
        return jsonify({"status": "ok"})

    install_rate_limits(app, settings)
    install_openapi(app)  # last: it documents every route registered before it
    return app
