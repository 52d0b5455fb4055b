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


def test_tokens_from_the_fernet_era_still_decrypt_and_rotate_to_the_current_format():
    from cryptography.fernet import Fernet

    key = CredentialCipher.generate_key()
    legacy = Fernet(key.encode()).encrypt(b'{"smtp": "pw"}').decode()
    cipher = CredentialCipher([key])
    assert cipher.decrypt(legacy)["smtp"].reveal() == "pw"
    assert cipher.rotate(legacy).startswith("mc1.")
    assert cipher.decrypt(cipher.rotate(legacy))["smtp"].reveal() == "pw"


@pytest.mark.parametrize("token", ["mc1.", "mc1.!!!", "mc1." + "A" * 40, "gAAAAAnonsense", ""])
def test_damaged_tokens_are_a_credential_error(token):
    with pytest.raises(CredentialError):
        CredentialCipher([CredentialCipher.generate_key()]).decrypt(token)


def test_a_tampered_token_does_not_decrypt():
    cipher = CredentialCipher([CredentialCipher.generate_key()])
    token = cipher.encrypt({"smtp": Secret("pw")})
    body = bytearray(token.encode())
    body[-5] = ord("A") if body[-5] != ord("A") else ord("B")
    with pytest.raises(CredentialError):
        cipher.decrypt(body.decode())


def test_is_current_only_for_a_token_under_the_first_key():
    from cryptography.fernet import Fernet

    old, new = CredentialCipher.generate_key(), CredentialCipher.generate_key()
    rotating = CredentialCipher([new, old])
    assert rotating.is_current(rotating.encrypt({"smtp": Secret("pw")}))
    assert not rotating.is_current(CredentialCipher([old]).encrypt({"smtp": Secret("pw")}))
    # A Fernet-era token under the first key still gets the current format.
    assert not rotating.is_current(Fernet(new.encode()).encrypt(b'{"smtp": "pw"}').decode())
    assert not rotating.is_current("mc1.!!!")
