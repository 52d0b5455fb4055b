import logging
import pickle

import pytest

from app.credentials import CredentialCipher, CredentialError, Secret


def test_secret_never_shows_itself(caplog):
    secret = Secret("hunter2")
    logging.getLogger("t").warning("value %s %r %s", secret, secret, [secret])
    assert "hunter2" not in caplog.text
    assert "hunter2" not in f"{secret} {secret!r}"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_rotation_first_key_encrypts_all_keys_decrypt():
    old, new = CredentialCipher.generate_key(), CredentialCipher.generate_key()
    token = CredentialCipher([old]).encrypt({"smtp": Secret("pw")})
    # A short password could turn up in the base64 token by chance; a long one cannot.
    assert "correct-horse-battery" not in CredentialCipher([old]).encrypt(
        {"smtp": Secret("correct-horse-battery")})
    rotated = CredentialCipher([new, old])
    assert rotated.decrypt(token)["smtp"].reveal() == "pw"
    fresh = rotated.rotate(token)
    assert CredentialCipher([new]).decrypt(fresh)["smtp"].reveal() == "pw"
    with pytest.raises(CredentialError):
        CredentialCipher([new]).decrypt(token)
