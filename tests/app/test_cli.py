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


def _create(runner: CliRunner, team: str) -> str:
    result = runner.invoke(main, ["api-key", "create", "--team", team])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def test_api_key_list_and_revoke(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    first, second = _create(runner, "acme"), _create(runner, "acme")
    _create(runner, "other")

    listed = runner.invoke(main, ["api-key", "list", "--team", "acme"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [first[:10], second[:10]]
    assert all("created 20" in line and "last used never" in line for line in lines)
    assert first not in listed.output and "revoked" not in listed.output
    assert team_for_key(Database(database_url), first) is not None

    by_prefix = runner.invoke(main, ["api-key", "revoke", lines[0].split()[0]])
    assert by_prefix.exit_code == 0, by_prefix.output
    assert f"revoked {first[:10]} (team acme)" in by_prefix.stdout
    by_key = runner.invoke(main, ["api-key", "revoke", second])
    assert by_key.exit_code == 0 and second[:10] in by_key.stdout
    assert second not in by_key.output  # the key itself is never echoed
    twice = runner.invoke(main, ["api-key", "revoke", first])
    assert twice.exit_code == 0 and "already revoked" in twice.stdout

    after = runner.invoke(main, ["api-key", "list", "--team", "acme"]).stdout.splitlines()
    assert all("  revoked 20" in line for line in after) and len(after) == 2
    db = Database(database_url)
    assert team_for_key(db, first) is None and team_for_key(db, second) is None
    other = runner.invoke(main, ["api-key", "list", "--team", "other"]).stdout.splitlines()
    assert len(other) == 1 and "revoked" not in other[0]


def test_api_key_revoke_refuses_an_ambiguous_or_unknown_prefix(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    key = _create(runner, "acme")
    db = Database(database_url)
    with db.transaction() as session:  # another key with the same printed prefix
        team_id, created = session.execute(select(ApiKey.team_id, ApiKey.created_at)).one()
        session.add(ApiKey(team_id=team_id, key_hash="f" * 64, prefix=key[:10],
                           created_at=created))

    ambiguous = runner.invoke(main, ["api-key", "revoke", key[:10]])
    assert ambiguous.exit_code == 1
    assert f"prefix {key[:10]} matches 2 keys" in ambiguous.output
    unknown = runner.invoke(main, ["api-key", "revoke", "mc_nothing"])
    assert unknown.exit_code == 1 and "no API key" in unknown.output
    wrong_key = "mc_" + "A" * 43
    unknown_key = runner.invoke(main, ["api-key", "revoke", wrong_key])
    assert unknown_key.exit_code == 1 and wrong_key not in unknown_key.output
    assert team_for_key(db, key) is not None  # nothing was revoked
    assert runner.invoke(main, ["api-key", "revoke", key]).exit_code == 0


def test_api_key_list_of_an_unknown_team_is_an_error(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(main, ["api-key", "list", "--team", "nobody"])
    assert result.exit_code == 1 and "no team named 'nobody'" in result.output


def test_credentials_rotate(database_url, monkeypatch):
    from sqlalchemy import update

    from app.clock import SystemClock
    from app.credentials import CredentialCipher, Secret
    from app.models import EmailAccount
    from app.teams import create_api_key
    from tests.app.test_credentials_rotation import SEED_PASSWORD, seed_accounts

    old, new = CredentialCipher.generate_key(), CredentialCipher.generate_key()
    db = Database(database_url)
    team_id = create_api_key(db, SystemClock(), "acme").team_id
    ids = seed_accounts(db, CredentialCipher([old]), team_id, 3)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CREDENTIALS_KEYS", f"{new},{old}")
    runner = CliRunner()

    done = runner.invoke(main, ["credentials", "rotate", "--batch-size", "2"])
    assert done.exit_code == 0, done.output
    assert [line for line in done.stderr.splitlines() if line.startswith("accounts:")] == [
        "accounts: 2/3 checked, 2 re-encrypted, 0 already under the first key, 0 failed",
        "accounts: 3/3 checked, 3 re-encrypted, 0 already under the first key, 0 failed"]
    assert done.stdout.splitlines()[-2:] == [
        "accounts: 3/3 checked, 3 re-encrypted, 0 already under the first key, 0 failed; "
        "0 changed or deleted meanwhile (their change kept)",
        "every stored secret is under the first key of CREDENTIALS_KEYS"]
    with db.reading() as session:
        tokens = session.scalars(select(EmailAccount.credentials).order_by(EmailAccount.id)).all()
    assert [CredentialCipher([new]).decrypt(t)["smtp"].reveal() for t in tokens] == [
        SEED_PASSWORD] * 3

    stray = CredentialCipher([CredentialCipher.generate_key()]).encrypt(
        {"smtp": Secret("stray-pw"), "imap": Secret("stray-pw")})
    with db.transaction() as session:
        session.execute(update(EmailAccount).where(EmailAccount.id == ids[2])
                        .values(credentials=stray))
    failed = runner.invoke(main, ["credentials", "rotate"])
    assert failed.exit_code == 1
    assert (f"accounts that no key of CREDENTIALS_KEYS decrypts, by id: {ids[2]}"
            in failed.stderr.splitlines())
    assert "3/3 checked, 0 re-encrypted, 2 already under the first key, 1 failed" in failed.stdout
    assert stray not in failed.output and "stray-pw" not in failed.output


def test_oauth_app_set_stores_the_secret_encrypted(database_url, monkeypatch):
    from app.config import load_settings
    from app.credentials import CredentialCipher, Secret
    from app.models import OAuthApp
    from app.oauth.apps import load_oauth_app
    from app.teams import team_id_by_name

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CREDENTIALS_KEYS", CredentialCipher.generate_key())
    runner = CliRunner()
    _create(runner, "acme")
    args = ["oauth-app", "set", "--team", "acme", "--provider", "microsoft",
            "--client-id", "cid", "--client-secret", "very-secret-value", "--tenant", "contoso"]
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "very-secret-value" not in done.output
    db = Database(database_url)
    with db.reading() as session:
        assert "very-secret-value" not in session.scalar(select(OAuthApp.client_secret))
    app = load_oauth_app(db, load_settings().credential_cipher(), team_id_by_name(db, "acme"),
                         "microsoft")
    assert app.client_secret == Secret("very-secret-value")
    assert app.token_url == "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    bad = runner.invoke(main, ["oauth-app", "set", "--team", "acme", "--provider", "custom",
                               "--client-id", "c", "--client-secret", "s"])
    assert bad.exit_code != 0 and "token-url" in bad.output
    # Set again: one app per team and provider, replaced.
    assert runner.invoke(main, [*args[:-2], "--token-url", "https://t.test/t"]).exit_code == 0
    with db.reading() as session:
        assert session.scalars(select(OAuthApp.token_url)).all() == ["https://t.test/t"]
