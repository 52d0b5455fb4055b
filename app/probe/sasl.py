"""SASL client responses (RFC 4616 PLAIN, and the LOGIN mechanism's two answers).

The password is revealed here only to be base64-encoded straight onto the wire.
"""

from __future__ import annotations

import base64

from app.credentials import Secret


def plain_response(username: str, password: Secret) -> bytes:
    """base64("\\0" username "\\0" password), no authorization identity."""
    blob = b"\0" + username.encode("utf-8") + b"\0" + password.reveal().encode("utf-8")
    return base64.b64encode(blob)


def login_username(username: str) -> bytes:
    return base64.b64encode(username.encode("utf-8"))


def login_password(password: Secret) -> bytes:
    return base64.b64encode(password.reveal().encode("utf-8"))
