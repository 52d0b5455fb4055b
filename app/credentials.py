"""Passwords in memory and at rest.

A `Secret` never shows its value in a repr, str, log line or traceback; only `reveal()` does.
`CredentialCipher` encrypts with AES-256-GCM under keys derived (HKDF) from CREDENTIALS_KEYS,
so keys can be rotated: the first key encrypts, every key decrypts. Tokens written by earlier
versions (Fernet, under the same keys) still decrypt.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALED_PREFIX = "mc1."
_NONCE_BYTES = 12
_TAG_BYTES = 16


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self):  # never let a password travel through pickle (task args, caches)
        raise TypeError("Secret values cannot be pickled")


class CredentialError(Exception):
    """Stored credentials could not be decrypted with any configured key."""


class CredentialCipher:
    """Why not Fernet for new tokens: AES-GCM is one call, about a tenth of Fernet's CPU, and a
    10,000-row import encrypts 10,000 tokens before it can answer."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one credentials key is required")
        fernets = [Fernet(key.encode()) for key in keys]  # also checks each key's format
        self._legacy = MultiFernet(fernets)
        self._aeads = [AESGCM(_derive(key)) for key in keys]

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, secrets: dict[str, Secret]) -> str:
        plain = json.dumps({name: s.reveal() for name, s in secrets.items()}).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[0].encrypt(nonce, plain, None)
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> dict[str, Secret]:
        plain = self._open(token)
        if plain is None:
            raise CredentialError("stored credentials cannot be decrypted with CREDENTIALS_KEYS")
        return {name: Secret(value) for name, value in json.loads(plain).items()}

    def rotate(self, token: str) -> str:
        """The same secrets under the first key."""
        return self.encrypt(self.decrypt(token))

    def is_current(self, token: str) -> bool:
        """Whether the token is already what `rotate` would write: sealed under the first key.
        One try with that key only, so a rotation run skips such a token cheaply."""
        return (token.startswith(SEALED_PREFIX)
                and self._open_sealed(token, self._aeads[:1]) is not None)

    def _open(self, token: str) -> bytes | None:
        if not token.startswith(SEALED_PREFIX):
            try:
                return self._legacy.decrypt(token.encode())
            except InvalidToken:
                return None
        return self._open_sealed(token, self._aeads)

    @staticmethod
    def _open_sealed(token: str, aeads: list[AESGCM]) -> bytes | None:
        try:
            raw = base64.urlsafe_b64decode(token[len(SEALED_PREFIX):])
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            return None
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for aead in aeads:
            try:
                return aead.decrypt(nonce, sealed, None)
            except InvalidTag:
                continue
        return None


def _derive(key: str) -> bytes:
    # Its own key for AES-GCM, so the configured key never serves two algorithms.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"mailconnect credentials aes-256-gcm").derive(key.encode())
