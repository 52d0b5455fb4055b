"""The documented error shape, for tests of every place that answers errors."""

from typing import Any

from jsonschema import Draft202012Validator

from app.web.errors import ErrorBody

ERROR_SCHEMA = Draft202012Validator(ErrorBody.model_json_schema(mode="serialization"))


def assert_error_shape(body: Any) -> None:
    """`body` is `{"message", "errors": [{"row"?, "field", "message"}, ...]}` with at least one
    entry, and the message names the first entry's field."""
    ERROR_SCHEMA.validate(body)
    assert body["errors"] and all(entry["field"] for entry in body["errors"]), body
