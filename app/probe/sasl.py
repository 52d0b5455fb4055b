"""SASL client responses: RFC 4616 PLAIN, the LOGIN mechanism's two answers, and the OAuth2
bearer-token mechanisms XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER (RFC 7628).

The password or token is revealed here only to be base64-encoded straight onto the wire.
"""

from __future__ import annotations

import base64
import binascii
import json
from enum import StrEnum

from app.credentials import Secret


class OAuthMechanism(StrEnum):
    XOAUTH2 = "XOAUTH2"
    OAUTHBEARER = "OAUTHBEARER"


# XOAUTH2 first: Google and Microsoft both accept it, and Microsoft (Exchange Online, Outlook)
# offers nothing else, so it is the form provider-issued tokens are known to work with.
# OAUTHBEARER, the standard, is used only where a server offers it without XOAUTH2.
OAUTH_PREFERENCE: tuple[OAuthMechanism, ...] = (OAuthMechanism.XOAUTH2, OAuthMechanism.OAUTHBEARER)

# After a refused token the server sends a JSON error as a challenge, and waits for one more
# client response before its final refusal: XOAUTH2 wants an empty one, OAUTHBEARER a single
# %x01 (RFC 7628 section 3.2.3), base64-encoded on the wire.
OAUTH_ERROR_ACK: dict[OAuthMechanism, bytes] = {
    OAuthMechanism.XOAUTH2: b"",
    OAuthMechanism.OAUTHBEARER: base64.b64encode(b"\x01"),
}


def plain_response(username: str, password: Secret) -> bytes:
    """base64("\\0" username "\\0" password), no authorization identity."""
    blob = b"\0" + username.encode("utf-8") + b"\0" + password.reveal().encode("utf-8")
    return base64.b64encode(blob)


def login_username(username: str) -> bytes:
    return base64.b64encode(username.encode("utf-8"))


def login_password(password: Secret) -> bytes:
    return base64.b64encode(password.reveal().encode("utf-8"))


def oauth_blob(mechanism: OAuthMechanism, user: bytes, token: bytes) -> bytes:
    """The unencoded client response; bytes in, so the scrubber can rebuild it for any text."""
    if mechanism == OAuthMechanism.XOAUTH2:
        return b"user=" + user + b"\x01auth=Bearer " + token + b"\x01\x01"
    # gs2 header "n,a=<authzid>," (no channel binding); "," and "=" in the name are escaped.
    authzid = user.replace(b"=", b"=3D").replace(b",", b"=2C")
    return b"n,a=" + authzid + b",\x01auth=Bearer " + token + b"\x01\x01"


def oauth_response(mechanism: OAuthMechanism, username: str, token: Secret) -> bytes:
    """base64 of the XOAUTH2 or OAUTHBEARER initial client response."""
    blob = oauth_blob(mechanism, username.encode("utf-8"), token.reveal().encode("utf-8"))
    return base64.b64encode(blob)


def pick_oauth_mechanism(offered: set[str]) -> OAuthMechanism | None:
    """The preferred OAuth2 mechanism among those offered (names upper-case), if any."""
    return next((m for m in OAUTH_PREFERENCE if m.value in offered), None)


def oauth_error_status(challenge: str) -> str:
    """What a refused token's JSON error challenge says, for the stored message.

    Google sends {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"},
    Dovecot {"status":"401",...} or {"status":"invalid_token"}. Only the status and scope go
    into the message (never the raw challenge); anything undecodable is said to be so.
    """
    try:
        error = json.loads(base64.b64decode(challenge.strip(), validate=True))
    except (binascii.Error, ValueError):
        return "an undecodable error challenge"
    if not isinstance(error, dict):
        return "an undecodable error challenge"
    parts = [f"status {error.get('status')}"]
    if error.get("scope"):
        parts.append(f"scope {error.get('scope')}")
    return ", ".join(str(part) for part in parts)
