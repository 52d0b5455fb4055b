from click.testing import CliRunner
from sqlalchemy import select

from app.cli import main
from app.db import Database
from app.models import ApiKey, Team
from app.teams import hash_key, team_for_key


def test_api_key_create_prints_key_last_and_stores_only_its_hash(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    first = runner.invoke(main, ["api-key", "create", "--team", "acme"])
    second = runner.invoke(main, ["api-key", "create", "--team", "acme"])
    assert first.exit_code == 0, first.output
    key = first.stdout.strip().splitlines()[-1]
    assert key.startswith("mc_") and len(key) > 40
    db = Database(url)
    with db.transaction() as session:
        assert session.scalars(select(Team.name)).all() == ["acme"]
        hashes = session.scalars(select(ApiKey.key_hash)).all()
    assert hash_key(key) in hashes and key not in hashes and len(hashes) == 2
    assert team_for_key(db, key) == team_for_key(db, second.stdout.split()[-1])
    assert team_for_key(db, "mc_unknown") is None


def test_bad_configuration_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PROBE_ALLOW_NETWORKS", "nonsense")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code != 0
    assert "PROBE_ALLOW_NETWORKS" in result.output


def test_webhook_url_and_secret_of_a_team(tmp_path, monkeypatch):
    from app.config import load_settings
    from app.credentials import CredentialCipher
    from app.teams import webhook_secret

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CREDENTIALS_KEYS", CredentialCipher.generate_key())
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["api-key", "create", "--team", "acme"]).exit_code == 0

    bad = runner.invoke(main, ["webhook-url", "set", "--team", "acme", "ftp://x"])
    assert bad.exit_code != 0 and "http or https" in bad.output
    unknown = runner.invoke(main, ["webhook-url", "set", "--team", "nobody", "https://a.b/"])
    assert unknown.exit_code != 0 and "no team" in unknown.output
    done = runner.invoke(main, ["webhook-url", "set", "--team", "acme", "https://hooks.test/x"])
    assert done.exit_code == 0, done.output
    db = Database(url)
    with db.reading() as session:
        assert session.scalar(select(Team.callback_url)) == "https://hooks.test/x"

    shown = runner.invoke(main, ["webhook-secret", "show", "--team", "acme"])
    assert shown.exit_code == 0, shown.output
    secret = shown.stdout.strip().splitlines()[-1]
    again = runner.invoke(main, ["webhook-secret", "show", "--team", "acme"])
    assert again.stdout.strip().splitlines()[-1] == secret
    with db.reading() as session:
        team_id, stored = session.execute(select(Team.id, Team.webhook_secret)).one()
    assert secret.startswith("whsec_") and secret not in stored
    assert webhook_secret(db, load_settings().credential_cipher(), team_id).reveal() == secret
