"""API keys: `x-api-key: KEY`, or `Authorization: Bearer KEY`."""

from __future__ import annotations

from flask import current_app, g, request

from app.web.errors import ApiError


def presented_key() -> str:
    """The API key the request carries, or "" when it carries none."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
    return key


def require_team() -> None:
    key = presented_key()
    if not key:
        raise ApiError(401, "x-api-key: is required (or Authorization: Bearer <key>)")
    # The key cache re-checks each key at least once a second, so a revoked key stops here.
    team_id = current_app.extensions["mailconnect.keys"].team_for_key(key)
    if team_id is None:
        raise ApiError(401, "x-api-key: is not a valid API key (unknown or revoked)")
    g.team_id = team_id
