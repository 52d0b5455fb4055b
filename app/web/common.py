"""What the API's handlers share: the services, reading a JSON object body or a bounded
number from the query, the 422 of field errors, and the per-host test slots."""

from __future__ import annotations

import re
from collections.abc import Mapping

from annotated_types import Ge, Le
from flask import current_app, g, request
from pydantic import BaseModel

from app.accounts.slots import HostSlots
from app.importing.rows import FieldError
from app.services import Services
from app.web.errors import ApiError
from app.web.guards import json_body, whole_number

# Our request ids are 20 hex digits; anything far from that shape names no import, and some of
# it (a NUL) the database would refuse with an error rather than find nothing.
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def services() -> Services:
    return current_app.extensions["mailconnect"]


def json_object() -> dict:
    """The request's JSON object body: 415 for another content type, 422 for another shape."""
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type: must be application/json")
    body = json_body(request.get_data())
    if not isinstance(body, dict):
        raise ApiError(422, "body: must be a JSON object")
    return body


def invalid(errors: list[FieldError], sent: Mapping[str, str] | None = None) -> ApiError:
    """A 422 with one entry per bad field, each under the name the client sent it by
    (`sent`: our field name -> theirs, e.g. smtpPort -> payload.smtp.port)."""
    named = [FieldError((sent or {}).get(e.field, e.field), e.message) for e in errors]
    return ApiError(422, "; ".join(f"{e.field}: {e.message}" for e in named),
                    [e.as_dict() for e in named])


def slots(team_id: int | None = None) -> HostSlots:
    """The job runners' per-host slots, waited for up to one probe deadline; counted against
    the caller's team unless `team_id` names another (the OAuth callback has no caller)."""
    s = services()
    queue = current_app.extensions["mailconnect.queue"]
    return HostSlots(s.gate, s.settings.probe_timeout_seconds,
                     on_woken=getattr(queue, "wake_rows", None),
                     team_id=g.team_id if team_id is None else team_id,
                     quota=s.login_quota)


def query_int(model: type[BaseModel], name: str) -> int | None:
    """The query parameter `name` as a whole number within the bounds and default that `model`
    (the query's documented model) gives it; a blank or missing one is the default.

    Read with `whole_number`, not pydantic: ASCII digits only, no sign, no whitespace games,
    and a 5,000-digit value costs nothing.
    """
    field = model.model_fields[name]
    low = next(m.ge for m in field.metadata if isinstance(m, Ge))
    high = next(m.le for m in field.metadata if isinstance(m, Le))
    raw = request.args.get(name)
    if raw is None or raw == "":
        return field.default
    number = whole_number(raw, low, high)
    if number is None:
        raise ApiError(422, f"{name}: must be a whole number from {low} to {high}")
    return number
