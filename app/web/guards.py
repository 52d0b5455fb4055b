"""Request bodies read defensively: bounded nesting, strict UTF-8, JSON that PostgreSQL can store.

Python's json parser recurses once per level of nesting, so a body of 5,000 `[` exhausts the
interpreter's stack before any validation runs. The depth is therefore measured on the raw text
first, with string operations that run at C speed, and json.loads only sees bodies within it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from app.web.errors import ApiError

MAX_JSON_DEPTH = 32

# A JSON string, escapes included; an unterminated one does not match and is left to json.loads.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]]+")
_BRACES_AS_BRACKETS = str.maketrans("{}", "[]")
# A \u escape of a UTF-16 surrogate: cheap to look for, rare in real bodies.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_body(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The parsed body, or a 400 naming `body`: not UTF-8, nested deeper than `max_depth`,
    not JSON, or holding a string no database can store (an unpaired surrogate).

    A number too large for a float (`1e999`) is refused here too, naming where it is
    (`smtpPort`, `[3].smtpPort`): Python would make it Infinity, which no field takes and
    PostgreSQL's JSON cannot store.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body: is not valid UTF-8 (byte {exc.start})") from None
    depth = json_depth(text, max_depth)
    if depth > max_depth:
        raise ApiError(400, f"body: JSON nesting deeper than {max_depth} levels")
    overflowing: list[str] = []

    def finite(literal: str) -> Any:
        number = float(literal)
        if math.isfinite(number):
            return number
        overflowing.append(literal)
        return _OVERFLOW  # found by its identity below, to name the field that holds it

    try:
        value = json.loads(text, parse_float=finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body: is not valid JSON ({exc})") from None
    if overflowing:
        literal = overflowing[0]
        shown = literal if len(literal) <= 40 else literal[:40] + "..."
        raise ApiError(400, f"{_path_to(value, _OVERFLOW) or 'body'}: the number {shown} is "
                            "out of range (JSON numbers here must fit a 64-bit float)")
    if _SURROGATE_ESCAPE.search(text) and not _encodable(value):
        raise ApiError(400, "body: contains an unpaired UTF-16 surrogate (\\ud800 to \\udfff); "
                            "text must be valid Unicode")
    return value


def json_depth(text: str, limit: int) -> int:
    """How deeply `text` nests arrays and objects, counted up to `limit + 1` (enough to say
    "too deep"). Brackets inside strings do not count; unclosed ones do, as json.loads would
    recurse into them before noticing the end.

    Each pass deletes every empty pair `[]`, which lowers every remaining pair by one level, so
    after `limit` passes a `[]` is left only where the nesting went deeper than `limit`.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text).translate(_BRACES_AS_BRACKETS))
    for level in range(limit):
        if "[]" not in brackets:
            # What is left has no pairs: closers, then openers nobody closed, each of which
            # may hold pairs up to `level` deep.
            return level + brackets.count("[")
        brackets = brackets.replace("[]", "")
    return limit + 1 if "[]" in brackets else limit + brackets.count("[")


_OVERFLOW = object()


_DIGITS = re.compile(r"\d{1,19}", re.ASCII)


def whole_number(raw: str, low: int, high: int) -> int | None:
    """`raw` as a whole number from low to high, or None. ASCII digits only: str.isdigit also
    takes "²", which int() refuses, and a few thousand digits make int() raise."""
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        return None
    return int(raw)


def _path_to(value: Any, target: object, path: str = "") -> str | None:
    """Where `target` sits in the parsed body, as `[0].smtpPort` (a row) or `smtpPort`."""
    if value is target:
        return path
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _path_to(item, target, where)
        if found is not None:
            return found
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(_encodable(item) for item in value)
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    return True
