"""Credential key rotation: every stored secret re-encrypted under the first key, batch by
batch, resumable, and never over a change that landed while it ran.

Races are made exact with a cipher that runs the competing change while it re-encrypts a given
token, which is after the rotation read that token and before it writes the new one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from app.accounts.management import (
    connect_account,
    delete_account,
    get_account,
    retest_account,
    update_account,
)
from app.accounts.retest import RetestWrite
from app.accounts.slots import HostSlots
from app.clock import SystemClock
from app.credentials import CredentialCipher, CredentialError, Secret
from app.credentials_rotation import rotate_credentials
from app.db import Database
from app.importing.rows import validate_row
from app.jobs.hostgate import OpenGate
from app.jobs.intake import submit_job
from app.models import ConnectJobRow, EmailAccount, RowState
from app.oauth.apps import load_oauth_app, set_oauth_app
from app.probe import Prober
from app.probe.model import AccountProbe, ProtocolResult
from app.teams import create_api_key, webhook_secret
from tests.conftest import USERS
from tests.factories import bulk_row

OPEN = HostSlots(OpenGate(), 1)
SEED_PASSWORD = "seed-pw"


class OkProber:
    """Every login succeeds: these tests are about what is stored, not about logging in."""

    def probe_sync(self, smtp, imap) -> AccountProbe:
        ok = ProtocolResult("ok")
        return AccountProbe(smtp=ok, imap=ok, duration_ms=1)


class RacingCipher(CredentialCipher):
    """Runs `meanwhile[token]()` when it is about to re-encrypt that token: between the
    rotation's read of the row and its write, where a user's request can land."""

    def __init__(self, keys: list[str], meanwhile: dict[str, Callable[[], object]]) -> None:
        super().__init__(keys)
        self.meanwhile = meanwhile

    def rotate(self, token: str) -> str:
        change = self.meanwhile.pop(token, None)
        if change is not None:
            change()
        return super().rotate(token)


def seed_accounts(db: Database, cipher: CredentialCipher, team_id: int, count: int) -> list[int]:
    """`count` accounts saved under `cipher`, in id order."""
    return [connect_account(db, cipher, SystemClock(), OkProber(), team_id,
                            validate_row(bulk_row(f"user{n}@example.com",
                                                  smtpPassword=SEED_PASSWORD,
                                                  imapPassword=SEED_PASSWORD)),
                            slots=OPEN).account_id
            for n in range(count)]


def token_of(db: Database, account_id: int) -> str | None:
    with db.reading() as session:
        return session.scalar(select(EmailAccount.credentials)
                              .where(EmailAccount.id == account_id))


def revealed(cipher: CredentialCipher, token: str) -> dict[str, str]:
    return {name: secret.reveal() for name, secret in cipher.decrypt(token).items()}


def job_row_tokens(db: Database, job_id: str) -> dict[int, str | None]:
    with db.reading() as session:
        return dict(session.execute(select(ConnectJobRow.id, ConnectJobRow.credentials)
                                    .where(ConnectJobRow.job_id == job_id)
                                    .order_by(ConnectJobRow.id)).all())


@pytest.fixture
def team(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


@pytest.fixture
def new_key() -> str:
    return CredentialCipher.generate_key()


@pytest.fixture
def old_key(credentials_key) -> str:
    """The key `services.cipher` encrypts with: the one being rotated away."""
    return credentials_key


@pytest.fixture
def rotating(new_key, old_key) -> CredentialCipher:
    """CREDENTIALS_KEYS=NEW,OLD: what every process runs with while the rotation runs."""
    return CredentialCipher([new_key, old_key])


def mailbox(server, email: str) -> dict:
    return bulk_row(email, smtpPassword=USERS[email], imapPassword=USERS[email],
                    smtpHost="localhost", smtpPort=server.submission_port,
                    smtpEncryption="starttls", imapHost="localhost", imapPort=server.imaps_port,
                    imapEncryption="ssl")


@pytest.mark.integration
def test_after_a_rotation_the_old_key_can_go_and_every_account_still_tests(
        services, settings, team, mail_server, new_key, old_key, rotating):
    s = services
    prober = Prober(settings.probe_settings())
    emails = ["alice@example.test", "bob@example.test", "carol@example.test"]
    ids = [connect_account(s.db, s.cipher, s.clock, prober, team,
                           validate_row(mailbox(mail_server, email), policy=settings.host_policy),
                           slots=OPEN).account_id for email in emails]
    assert [get_account(s.db, team, i).status for i in ids] == [1, 1, 1]
    job = submit_job(s.db, s.cipher, s.clock, team,
                     [mailbox(mail_server, "dave@example.test"),
                      mailbox(mail_server, "erin@example.test")], policy=settings.host_policy)
    signing_secret = webhook_secret(s.db, s.cipher, team).reveal()
    set_oauth_app(s.db, s.cipher, s.clock, team, "google", "cid", Secret("app-secret"))

    summary = rotate_credentials(s.db, rotating, batch_size=2)
    assert summary.complete
    assert [(c.name, c.total, c.checked, c.rotated) for c in summary.columns] == [
        ("webhook secrets", 1, 1, 1), ("OAuth app secrets", 1, 1, 1), ("job rows", 2, 2, 2),
        ("accounts", 3, 3, 3)]
    assert load_oauth_app(s.db, CredentialCipher([new_key]), team, "google").client_secret == \
        Secret("app-secret")

    only_new = CredentialCipher([new_key])  # CREDENTIALS_KEYS=NEW: the old key is gone
    old_only = CredentialCipher([old_key])
    for account_id, email in zip(ids, emails, strict=True):
        token = token_of(s.db, account_id)
        assert revealed(only_new, token) == {"smtp": USERS[email], "imap": USERS[email]}
        with pytest.raises(CredentialError):
            old_only.decrypt(token)
        tested = retest_account(s.db, only_new, s.clock, prober, team, account_id, slots=OPEN)
        assert tested.written == RetestWrite.LANDED
        assert tested.probe.verified, (email, tested.probe)
        assert get_account(s.db, team, account_id).status == 1
    rows = job_row_tokens(s.db, job.job_id)
    assert [revealed(only_new, t)["smtp"] for t in rows.values()] == [
        USERS["dave@example.test"], USERS["erin@example.test"]]
    assert webhook_secret(s.db, only_new, team).reveal() == signing_secret


class Interrupted(Exception):
    pass


def test_an_interrupted_run_is_finished_by_the_next(services, team, rotating, new_key):
    s = services
    ids = seed_accounts(s.db, s.cipher, team, 5)

    def crash(_progress) -> None:  # the process dies right after its first batch committed
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate_credentials(s.db, rotating, batch_size=2, on_batch=crash)
    only_new = CredentialCipher([new_key])
    assert [only_new.is_current(token_of(s.db, i)) for i in ids] == [
        True, True, False, False, False]

    lines: list[str] = []
    summary = rotate_credentials(s.db, rotating, batch_size=2,
                                 on_batch=lambda progress: lines.append(progress.line()))
    assert summary.complete
    assert lines == [
        "accounts: 2/5 checked, 0 re-encrypted, 2 already under the first key, 0 failed",
        "accounts: 4/5 checked, 2 re-encrypted, 2 already under the first key, 0 failed",
        "accounts: 5/5 checked, 3 re-encrypted, 2 already under the first key, 0 failed",
    ]
    again = rotate_credentials(s.db, rotating, batch_size=2).columns[-1]
    assert (again.checked, again.rotated, again.current) == (5, 0, 5)
    for account_id in ids:
        assert revealed(only_new, token_of(s.db, account_id)) == {
            "smtp": SEED_PASSWORD, "imap": SEED_PASSWORD}


def test_rows_finishing_between_batches_make_it_skip_no_other_row(services, team, rotating,
                                                                    new_key):
    s = services
    job = submit_job(s.db, s.cipher, s.clock, team,
                     [bulk_row(f"user{n}@example.com") for n in range(6)])
    rows = list(job_row_tokens(s.db, job.job_id))

    def first_rows_finish(progress) -> None:
        if progress.checked == 2:  # the runner clears a row's credentials when it is done
            with s.db.transaction() as session:
                session.execute(update(ConnectJobRow).where(ConnectJobRow.id.in_(rows[:2]))
                                .values(state=RowState.DONE, credentials=None))

    summary = rotate_credentials(s.db, rotating, batch_size=2, on_batch=first_rows_finish)
    job_rows = summary.columns[2]  # after the webhook and OAuth app secrets
    assert (job_rows.checked, job_rows.rotated) == (6, 6)
    only_new = CredentialCipher([new_key])
    tokens = job_row_tokens(s.db, job.job_id)
    assert [tokens[r] for r in rows[:2]] == [None, None]
    assert all(only_new.is_current(tokens[r]) for r in rows[2:])


@pytest.mark.parametrize("patched_by", ["new config", "old config"])
def test_a_patch_landing_mid_rotation_wins(services, team, rotating, new_key, old_key,
                                           patched_by):
    s = services
    raced, other = seed_accounts(s.db, s.cipher, team, 2)
    # "old config": a web process not yet given the new key writes under the old one.
    patch_cipher = rotating if patched_by == "new config" else CredentialCipher([old_key])
    written: list[str | None] = []

    def patch() -> None:
        changed = update_account(s.db, patch_cipher, s.clock, OkProber(), team, raced,
                                 {"smtpPassword": "patched-pw", "imapPassword": "patched-pw"},
                                 slots=OPEN)
        assert changed is not None and changed.account is not None
        written.append(token_of(s.db, raced))

    cipher = RacingCipher([new_key, old_key], {token_of(s.db, raced): patch})
    accounts = rotate_credentials(s.db, cipher, batch_size=10).columns[-1]

    assert written and not cipher.meanwhile, "the PATCH ran between read and write"
    only_new = CredentialCipher([new_key])
    assert revealed(only_new, token_of(s.db, raced)) == {
        "smtp": "patched-pw", "imap": "patched-pw"}, "the older passwords were written back"
    assert revealed(only_new, token_of(s.db, other))["smtp"] == SEED_PASSWORD
    if patched_by == "new config":
        assert token_of(s.db, raced) == written[0], "the PATCH's own token is kept as it is"
        assert (accounts.rotated, accounts.current) == (1, 1)
    else:  # its token is looked at again and re-encrypted, passwords and all
        assert (accounts.rotated, accounts.current) == (2, 0)
    assert (accounts.checked, accounts.vanished, accounts.unsettled) == (2, 0, 0)


def test_a_delete_or_a_finished_row_mid_rotation_stays_so(services, team, rotating, new_key,
                                                          old_key):
    s = services
    deleted, kept = seed_accounts(s.db, s.cipher, team, 2)
    job = submit_job(s.db, s.cipher, s.clock, team,
                     [bulk_row("a@example.com"), bulk_row("b@example.com")])
    (finished, finished_token), (pending, _) = job_row_tokens(s.db, job.job_id).items()

    def finish() -> None:  # as the runner does when the row's test is recorded
        with s.db.transaction() as session:
            session.execute(update(ConnectJobRow).where(ConnectJobRow.id == finished)
                            .values(state=RowState.DONE, credentials=None))

    cipher = RacingCipher([new_key, old_key], {
        finished_token: finish,
        token_of(s.db, deleted): lambda: delete_account(s.db, s.clock, team, deleted),
    })
    summary = rotate_credentials(s.db, cipher, batch_size=10)

    assert not cipher.meanwhile
    job_rows, accounts = summary.columns[2:]
    assert job_row_tokens(s.db, job.job_id)[finished] is None, "credentials written back"
    assert CredentialCipher([new_key]).is_current(job_row_tokens(s.db, job.job_id)[pending])
    assert get_account(s.db, team, deleted) is None
    assert CredentialCipher([new_key]).is_current(token_of(s.db, kept))
    for column in (job_rows, accounts):
        assert (column.checked, column.rotated, column.vanished) == (2, 1, 1)
        assert column.complete


def test_a_token_no_key_decrypts_is_reported_by_id_and_left_alone(services, team, rotating,
                                                                  new_key):
    s = services
    ids = seed_accounts(s.db, s.cipher, team, 3)
    stray = CredentialCipher([CredentialCipher.generate_key()]).encrypt(
        {"smtp": Secret("stray-pw"), "imap": Secret("stray-pw")})
    with s.db.transaction() as session:
        session.execute(update(EmailAccount).where(EmailAccount.id == ids[1])
                        .values(credentials=stray))

    summary = rotate_credentials(s.db, rotating, batch_size=2)

    accounts = summary.columns[-1]
    assert not summary.complete
    assert (accounts.checked, accounts.rotated, accounts.failed) == (3, 2, 1)
    assert accounts.failed_ids == [ids[1]]
    assert token_of(s.db, ids[1]) == stray
    assert accounts.failed_line() == (
        f"accounts that no key of CREDENTIALS_KEYS decrypts, by id: {ids[1]}")
    only_new = CredentialCipher([new_key])
    assert all(only_new.is_current(token_of(s.db, i)) for i in (ids[0], ids[2]))


def test_a_batch_size_below_one_is_refused(services, rotating):
    with pytest.raises(ValueError, match="batch_size"):
        rotate_credentials(services.db, rotating, batch_size=0)
