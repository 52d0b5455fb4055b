"""Re-tests and PATCHes racing other changes to the same account.

A prober double holds a test inside its probe until the test has changed the account, so
each interleaving happens exactly, every run.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from app.accounts.management import (
    connect_account,
    delete_account,
    get_account,
    list_accounts,
    retest_account,
    update_account,
)
from app.accounts.retest import RetestWrite
from app.accounts.slots import HostSlots
from app.importing.rows import validate_row
from app.jobs.hostgate import GateDecision, OpenGate
from app.probe.model import AccountProbe, ErrorCode, ProtocolResult
from app.teams import create_api_key
from tests.factories import bulk_row

GOOD = "good-pw"
OPEN = HostSlots(OpenGate(), 1)


class HeldProber:
    """Passes the password GOOD, fails any other; when told, holds the next probe until the
    test lets it go."""

    def __init__(self) -> None:
        self.passwords: list[str] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        self._hold_next = False
        self._lock = threading.Lock()

    def hold_next(self) -> None:
        self._hold_next = True

    def probe_sync(self, smtp, imap) -> AccountProbe:
        with self._lock:
            hold, self._hold_next = self._hold_next, False
            self.passwords.append(smtp.password.reveal())
        if hold:
            self.entered.set()
            assert self.go.wait(20), "the test never let the probe go"
        if smtp.password.reveal() == GOOD:
            result = ProtocolResult("ok")
        else:
            result = ProtocolResult("failed", ErrorCode.AUTH_FAILED, "535 5.7.8 failed")
        return AccountProbe(smtp=result, imap=result, duration_ms=1)


@pytest.fixture
def prober() -> HeldProber:
    return HeldProber()


@pytest.fixture
def team(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def seed(services, prober, team, password: str, **fields) -> int:
    row = bulk_row("sarah@example.com", smtpPassword=password, imapPassword=password, **fields)
    return connect_account(services.db, services.cipher, services.clock, prober, team,
                           validate_row(row), slots=OPEN).account_id


def held(pool, prober, call) -> Future:
    """Start call in a thread and return once its probe is under way (and held)."""
    prober.hold_next()
    future = pool.submit(call)
    assert prober.entered.wait(20), "the call never reached its probe"
    return future


def passwords(services, account_id) -> dict[str, str]:
    account = get_account(services.db, *account_id)
    return {p: s.reveal() for p, s in services.cipher.decrypt(account.credentials).items()}


def test_retest_of_an_account_deleted_meanwhile_leaves_it_deleted(services, prober, team, pool):
    s = services
    account_id = seed(s, prober, team, GOOD)
    future = held(pool, prober, lambda: retest_account(
        s.db, s.cipher, s.clock, prober, team, account_id, slots=OPEN))
    assert delete_account(s.db, s.clock, team, account_id)
    prober.go.set()
    result = future.result(timeout=20)
    assert result.written == RetestWrite.DELETED
    assert get_account(s.db, team, account_id) is None, "a re-test brought it back"


def test_retest_never_reverts_a_patch_made_meanwhile(services, prober, team, pool):
    s = services
    account_id = seed(s, prober, team, GOOD)
    future = held(pool, prober, lambda: retest_account(
        s.db, s.cipher, s.clock, prober, team, account_id, slots=OPEN))
    patched = update_account(s.db, s.cipher, s.clock, prober, team, account_id,
                             {"smtpPassword": "new-pw", "imapPassword": "new-pw"}, slots=OPEN)
    assert patched.tested.written == RetestWrite.LANDED
    prober.go.set()
    result = future.result(timeout=20)

    assert result.probe.verified and result.stale, "the old password's test, reported as such"
    assert passwords(s, (team, account_id)) == {"smtp": "new-pw", "imap": "new-pw"}
    account = get_account(s.db, team, account_id)
    assert (account.status, account.smtp_error_code) == (0, "auth_failed"), (
        "the stored result is the new password's test, not the old one's")


def test_patch_marks_the_account_untested_until_its_own_test_lands(services, prober, team,
                                                                     pool):
    s = services
    account_id = seed(s, prober, team, "old-pw", maxEmailPerDay=25)
    before = get_account(s.db, team, account_id)
    assert before.status == 0 and before.last_tested_at is not None
    future = held(pool, prober, lambda: update_account(
        s.db, s.cipher, s.clock, prober, team, account_id,
        {"smtpPassword": GOOD, "imapPassword": GOOD}, slots=OPEN))
    during = get_account(s.db, team, account_id)
    assert during.settings_version == before.settings_version + 1
    assert (during.status, during.smtp_result, during.smtp_error_code,
            during.last_tested_at) == (0, None, None, None)
    assert passwords(s, (team, account_id)) == {"smtp": GOOD, "imap": GOOD}, (
        "written, committed, before the probe")
    prober.go.set()
    after = future.result(timeout=20).account
    assert (after.status, after.smtp_result, after.max_email_per_day) == (1, "ok", 25)


def test_racing_patches_the_later_settings_and_only_their_result_stay(services, prober, team,
                                                                       pool):
    s = services
    account_id = seed(s, prober, team, "old-pw")
    first = held(pool, prober, lambda: update_account(
        s.db, s.cipher, s.clock, prober, team, account_id,
        {"smtpPassword": GOOD, "imapPassword": GOOD}, slots=OPEN))
    second = update_account(s.db, s.cipher, s.clock, prober, team, account_id,
                            {"smtpPassword": "bad-pw", "imapPassword": "bad-pw",
                             "fromName": "Second"}, slots=OPEN)
    assert not second.tested.stale and second.account.smtp_error_code == "auth_failed"
    prober.go.set()
    late = first.result(timeout=20)
    assert late.tested.probe.verified and late.tested.stale

    account = get_account(s.db, team, account_id)
    assert passwords(s, (team, account_id)) == {"smtp": "bad-pw", "imap": "bad-pw"}
    assert (account.status, account.smtp_error_code, account.from_name) == (
        0, "auth_failed", "Second"), "the earlier PATCH's passing test must not land"


class InterleavingGate(OpenGate):
    """Lets another change land between a PATCH reading the account and writing it."""

    def __init__(self, change) -> None:
        self.change = change

    def acquire(self, hosts, waiter=None) -> GateDecision:
        change, self.change = self.change, None
        if change:
            change()
        return super().acquire(hosts)


def test_a_patch_merges_into_a_change_that_landed_after_it_read(services, prober, team):
    s = services
    account_id = seed(s, prober, team, GOOD, smtpPort=587)
    gate = InterleavingGate(lambda: update_account(
        s.db, s.cipher, s.clock, prober, team, account_id, {"smtpPort": 2525}, slots=OPEN))
    update_account(s.db, s.cipher, s.clock, prober, team, account_id, {"fromName": "Mine"},
                   slots=HostSlots(gate, 1))
    account = get_account(s.db, team, account_id)
    assert (account.smtp_port, account.from_name) == (2525, "Mine"), (
        "neither change reverted the other's field")
    assert account.status == 1


def test_sending_settings_change_in_place_without_a_test(services, prober, team):
    s = services
    account_id = seed(s, prober, team, GOOD)
    before = get_account(s.db, team, account_id)
    tested = len(prober.passwords)
    updated = update_account(s.db, s.cipher, s.clock, prober, team, account_id,
                             {"maxEmailPerDay": 40, "tags": ["x"]}, slots=OPEN)
    assert updated.tested is None and len(prober.passwords) == tested
    after = get_account(s.db, team, account_id)
    assert after.settings_version == before.settings_version
    assert (after.status, after.max_email_per_day, after.last_tested_at) == (
        1, 40, before.last_tested_at)


def test_a_new_connect_of_the_same_email_wins_over_a_running_retest(services, prober, team,
                                                                      pool):
    s = services
    account_id = seed(s, prober, team, GOOD)
    future = held(pool, prober, lambda: retest_account(
        s.db, s.cipher, s.clock, prober, team, account_id, slots=OPEN))
    assert seed(s, prober, team, "resubmitted-pw") == account_id
    prober.go.set()
    assert future.result(timeout=20).stale
    account = get_account(s.db, team, account_id)
    assert account.smtp_error_code == "auth_failed"
    assert passwords(s, (team, account_id))["smtp"] == "resubmitted-pw"


def test_a_connect_never_saves_over_a_patch_made_during_its_test(services, prober, team, pool):
    s = services
    account_id = seed(s, prober, team, "old-pw")
    row = bulk_row("sarah@example.com", smtpPassword=GOOD, imapPassword=GOOD)
    future = held(pool, prober, lambda: connect_account(
        s.db, s.cipher, s.clock, prober, team, validate_row(row), slots=OPEN))
    patched = update_account(s.db, s.cipher, s.clock, prober, team, account_id,
                             {"smtpPassword": "patched-pw", "imapPassword": "patched-pw",
                              "fromName": "Patched"}, slots=OPEN)
    assert not patched.tested.stale
    prober.go.set()
    result = future.result(timeout=20)

    assert result.account_id == account_id
    assert result.probe.verified and result.stale, "its own result, reported as not saved"
    assert passwords(s, (team, account_id)) == {"smtp": "patched-pw", "imap": "patched-pw"}
    account = get_account(s.db, team, account_id)
    assert (account.from_name, account.status, account.smtp_error_code) == (
        "Patched", 0, "auth_failed"), "the PATCH's settings and its own test's result stay"


def test_a_connect_never_brings_back_an_account_deleted_during_its_test(services, prober, team,
                                                                         pool):
    s = services
    account_id = seed(s, prober, team, "old-pw")
    row = bulk_row("sarah@example.com", smtpPassword=GOOD, imapPassword=GOOD)
    future = held(pool, prober, lambda: connect_account(
        s.db, s.cipher, s.clock, prober, team, validate_row(row), slots=OPEN))
    assert delete_account(s.db, s.clock, team, account_id)
    prober.go.set()
    result = future.result(timeout=20)

    assert (result.account_id, result.written) == (None, RetestWrite.DELETED)
    assert result.probe.verified and result.stale, "its own result, reported as not saved"
    assert list_accounts(s.db, team, 1, 10).total == 0, "the connect brought it back"
    again = connect_account(s.db, s.cipher, s.clock, prober, team, validate_row(row), slots=OPEN)
    assert again.written == RetestWrite.LANDED and again.account_id is not None, (
        "a connect submitted after the deletion adds it back")
