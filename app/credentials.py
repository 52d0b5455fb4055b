"""Passwords in memory and at rest.

A `Secret` never shows its value in a repr, str, log line or traceback; only `reveal()` does.
`CredentialCipher` encrypts with MultiFernet so keys can be rotated: the first key encrypts,
every key decrypts.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


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
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one credentials key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, secrets: dict[str, Secret]) -> str:
        plain = json.dumps({name: s.reveal() for name, s in secrets.items()})
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> dict[str, Secret]:
        try:
            plain = self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise CredentialError(
                "stored credentials cannot be decrypted with CREDENTIALS_KEYS"
            ) from None
        return {name: Secret(value) for name, value in json.loads(plain).items()}

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()
