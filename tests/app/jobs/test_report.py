"""The report and the failed-rows file never hand a spreadsheet a formula (CSV injection)."""

import pandas as pd
import pytest
from sqlalchemy import select

from app.accounts.management import account_view
from app.jobs import report
from app.jobs.csvsafe import neutralise, neutralise_frame
from app.jobs.finish import finish_job
from app.models import EmailAccount
from app.probe.model import AccountProbe, ErrorCode, ProtocolResult
from app.teams import create_api_key
from tests.app.jobs.doubles import OK
from tests.app.jobs.helpers import download, view
from tests.app.jobs.test_runner import run_all, submit
from tests.factories import bulk_row

# The classic payloads: formulas, a DDE command, and formulas hidden behind whitespace.
PAYLOADS = ["=1+1", '=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
            "\t=1", "\r=1", "\n=1"]
# Emails that pass validation yet start like a formula, so they reach the report's email
# column through a tested account, not only as an invalid row's raw value.
VALID_FORMULA_EMAILS = ["=1+1@example.com", "-2+3@example.com", "+cmd|'!a0@example.com"]
# What a spreadsheet runs as a formula, spelled out here so that the check does not trust the
# code it checks.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
NUMBER_COLUMNS = ("row", "accountId", "accountStatus", "attempts", "durationMs")


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


class HostileServerProber:
    """A mail server answering with a payload as its error text: servers choose those words."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    def probe_sync(self, smtp, imap):
        if not smtp.host.startswith("bad"):
            return AccountProbe(smtp=OK, imap=OK, duration_ms=7)
        reply = self.replies.get(smtp.username, "535 5.7.8 not accepted")
        failed = ProtocolResult("failed", ErrorCode.AUTH_FAILED, reply)
        return AccountProbe(smtp=failed, imap=ProtocolResult("failed", ErrorCode.AUTH_FAILED,
                                                             reply), duration_ms=7)


def hostile_job(services, team_id) -> str:
    replies = {f"u{i}@example.com": payload for i, payload in enumerate(PAYLOADS)}
    rows = ([bulk_row(payload) for payload in [*PAYLOADS, "=cmd|' /C calc'!A0@x.com"]]
            + [bulk_row(email) for email in VALID_FORMULA_EMAILS]
            + [bulk_row(email, smtpHost="bad.example.com") for email in replies])
    return hostile_job_of(services, team_id, rows, replies)


def hostile_job_of(services, team_id, rows, replies=None) -> str:
    """Run the rows to a finished job; rows whose smtpHost starts 'bad' fail with the reply
    for their user name (a payload), or with a plain 535."""
    job = submit(services, team_id, rows)
    run_all(services, job.job_id, HostileServerProber(replies or {}))
    assert finish_job(services.db, services.clock, services.store, job.job_id)
    return job.job_id


def assert_no_cell_is_a_formula(table: list[dict[str, str]]) -> None:
    for line in table:
        for column, cell in line.items():
            assert not cell.startswith(FORMULA_STARTS), (column, cell)


def test_every_report_cell_that_looks_like_a_formula_is_text(services, team_id, monkeypatch):
    # Small chunks: every chunk the report writes is neutralised, not just the first.
    monkeypatch.setattr(report, "CHUNK_ROWS", 4)
    job_id = hostile_job(services, team_id)
    _, rows = download(services, view(services, team_id, job_id).report_key)
    assert_no_cell_is_a_formula(rows)

    invalid, connected = rows[:len(PAYLOADS) + 1], rows[len(PAYLOADS) + 1:][:3]
    # The raw value of an invalid row's email: stored trimmed, so "\t=1" arrives as "=1".
    assert [r["email"] for r in invalid] == [
        "'" + p.strip() for p in [*PAYLOADS, "=cmd|' /C calc'!A0@x.com"]]
    assert {r["status"] for r in invalid} == {"invalid"}
    assert [(r["email"], r["status"]) for r in connected] == [
        ("'" + email, "connected") for email in VALID_FORMULA_EMAILS]
    failed = rows[len(PAYLOADS) + 1 + len(VALID_FORMULA_EMAILS):]
    assert [(r["smtpError"], r["imapError"]) for r in failed] == [
        ("'" + p, "'" + p) for p in PAYLOADS], "a server's words reach the cell exactly, as text"


def test_report_numbers_stay_numbers(services, team_id):
    job_id = hostile_job(services, team_id)
    _, rows = download(services, view(services, team_id, job_id).report_key)
    tested = [r for r in rows if r["status"] != "invalid"]
    assert tested
    for line in tested:
        for column in NUMBER_COLUMNS:
            assert line[column].isdigit(), (column, line[column])


def test_failed_rows_file_cells_are_text_too(services, team_id):
    job_id = hostile_job(services, team_id)
    _, rows = download(services, view(services, team_id, job_id).failed_rows_key)
    assert_no_cell_is_a_formula(rows)
    emails = [r["smtpEmailAddress"] for r in rows]
    assert emails[:len(PAYLOADS)] == ["'" + p for p in PAYLOADS], "kept raw, as typed"
    assert [r["error"] for r in rows[-len(PAYLOADS):]] == ["'" + p for p in PAYLOADS]
    assert {r["smtpPort"] for r in rows} == {"587"}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_neutralise_quotes_a_formula_once(payload):
    assert neutralise(payload) == "'" + payload
    assert neutralise(neutralise(payload)) == "'" + payload, "a second pass changes nothing"


@pytest.mark.parametrize("value", ["", "a@example.com", "'=1", " =1", "Zoë", None, 5, -2, 1.5])
def test_neutralise_leaves_everything_else(value):
    assert neutralise(value) == value


def test_neutralise_frame_quotes_text_columns_only():
    frame = pd.DataFrame({"text": ["-2", "ok"], "count": [-2, 3], "ratio": [-1.5, 0.5]})
    frame["id"] = pd.Series([-7, None]).astype("Int64")
    csv = neutralise_frame(frame).to_csv(index=False)
    assert csv.splitlines() == ["text,count,ratio,id", "'-2,-2,-1.5,-7", "ok,3,0.5,"]


def test_unicode_names_reach_the_account_and_the_failed_rows_file_intact(services, team_id):
    names = {"fromName": "Zoë Ñúñez 李雷", "fromFirstName": "Zoë", "fromLastName": "Ñúñez 李雷"}
    rows = [bulk_row("zoe@example.com", **names),
            bulk_row("lei@example.com", smtpHost="bad.example.com", **names)]
    job_id = hostile_job_of(services, team_id, rows)
    with services.db.reading() as session:
        account = session.scalars(select(EmailAccount)
                                  .where(EmailAccount.email == "zoe@example.com")).one()
        shown = account_view(account)
    assert {name: shown[name] for name in names} == names
    _, failed = download(services, view(services, team_id, job_id).failed_rows_key)
    assert [{name: r[name] for name in names} for r in failed] == [names]
