"""Make server text safe to store: no secrets, one line, bounded length.

Servers do echo what they were sent ("501 5.5.4 Invalid AUTH PLAIN <blob>"), so every message
that may hold server words passes through `Scrubber.clean` before it leaves the probe.
"""

from __future__ import annotations

import base64
import re
import sys

from app.credentials import Secret
from app.probe.sasl import OAuthMechanism, oauth_blob

MAX_MESSAGE_CHARS = 300
MASK = "********"
_SHORT = 6  # secrets shorter than this are masked only as whole tokens
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r" {2,}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


class Scrubber:
    def __init__(self, username: str, password: Secret) -> None:
        self._username = username
        self._password = password
        self._forms: list[str] | None = None

    def _secret_forms(self) -> list[str]:
        # Built only when there is text to clean, so the password is not copied around otherwise.
        if self._forms is None:
            password = self._password.reveal()
            forms: set[str] = set()
            if password:
                raw = password.encode("utf-8", "surrogatepass")
                user = self._username.encode("utf-8", "surrogatepass")
                # Bare, SASL PLAIN with and without authzid, and HTTP Basic (proxy CONNECT).
                encoded = [_b64(raw), _b64(b"\0" + user + b"\0" + raw), _b64(user + b"\0" + raw),
                           _b64(user + b":" + raw)]
                # The password may be an OAuth2 access token: its XOAUTH2/OAUTHBEARER blobs too.
                encoded += [_b64(oauth_blob(m, user, raw)) for m in OAuthMechanism]
                forms.update(encoded)
                forms.update(e.rstrip("=") for e in encoded)
                forms.add(password)
                forms.add(password.replace("\\", "\\\\").replace('"', '\\"'))  # IMAP quoted
                forms.add(one_line(password, limit=len(password) + 1))  # as one_line renders it
            self._forms = sorted((f for f in forms if f), key=len, reverse=True)
        return self._forms

    def scrub(self, text: str) -> str:
        for form in self._secret_forms():
            if form not in text:
                continue
            if len(form) >= _SHORT:
                text = text.replace(form, MASK)
            else:
                # A short secret ("x") also occurs inside ordinary words; mask it only where it
                # stands as a token of its own, as an echoed password or base64 blob would.
                token = re.compile(rf"(?<![\w+/=]){re.escape(form)}(?![\w+/=])")
                text = token.sub(MASK, text)
        return text

    def clean(self, text: str) -> str:
        """Secrets masked, then one line, then truncated; masking comes first and again after
        flattening, so neither a line break nor the cut can leave a password half-matched."""
        flat = one_line(self.scrub(text), limit=sys.maxsize)
        return one_line(self.scrub(flat))
