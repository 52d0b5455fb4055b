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


def authenticate(key: str) -> bool:
    """Make `key`'s team the caller (g.team_id, and g.api_key for the rate limits); False when
    it is no valid key. Every way a key arrives (this header, a vendor dialect's query string
    or Basic password) ends here, so revocation and caching apply to all of them alike."""
    if not key:
        return False
    # The key cache re-checks each key at least once a second, so a revoked key stops here.
    team_id = current_app.extensions["mailconnect.keys"].team_for_key(key)
    if team_id is None:
        return False
    g.team_id, g.api_key = team_id, key
    return True


def require_team() -> None:
    key = presented_key()
    if not key:
        raise ApiError(401, "x-api-key: is required (or Authorization: Bearer <key>)")
    if not authenticate(key):
        raise ApiError(401, "x-api-key: is not a valid API key (unknown or revoked)")
