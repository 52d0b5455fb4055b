"""Every field, every awkward JSON value: a clear 4xx or an `invalid` row, never a 500."""

import pytest

from app.importing.rows import KNOWN_FIELDS
from app.probe.model import AccountProbe, ProtocolResult
from app.teams import team_for_key
from tests.factories import bulk_row

AWKWARD = [None, 0, -1, 10**30, 1.5, True, "", " ", "x" * 5000, "\x00", "ü", [], [1], {},
           {"a": 1}]


class NoNetworkProber:
    def probe_sync(self, smtp, imap):
        ok = ProtocolResult("ok")
        return AccountProbe(smtp=ok, imap=ok if imap else ProtocolResult.skipped(),
                            duration_ms=1)


@pytest.fixture
def quiet(services):
    services.prober = NoNetworkProber()
    return services


def test_bulk_rows_with_awkward_values_never_fail_the_request(client, api_key, quiet):
    rows = [bulk_row(f"u{i}@example.com", **{field: value})
            for i, (field, value) in enumerate(
                (f, v) for f in sorted(KNOWN_FIELDS) for v in AWKWARD)]
    rows += [None, 5, "text", [], [bulk_row()]]
    response = client.post("/v1/email-accounts/connect", json=rows,
                           headers={"x-api-key": api_key})
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("field", sorted(KNOWN_FIELDS))
def test_single_connect_awkward_values_are_4xx_or_tested(client, api_key, quiet, field):
    for value in AWKWARD:
        body = {**bulk_row("single@example.com"), field: value}
        response = client.post("/v1/email-accounts/smtp-imap/connect", json=body,
                               headers={"x-api-key": api_key})
        assert response.status_code in (200, 422), (field, value, response.json)
        if response.status_code == 422:
            assert response.json["errors"][0]["field"]


def test_patch_awkward_values_are_4xx_or_applied(client, api_key, quiet):
    from app.accounts.management import connect_account
    from app.accounts.slots import HostSlots
    from app.importing.rows import validate_row
    from app.jobs.hostgate import OpenGate

    account_id = connect_account(quiet.db, quiet.cipher, quiet.clock, quiet.prober,
                                 team_for_key(quiet.db, api_key),
                                 validate_row(bulk_row("p@example.com")),
                                 slots=HostSlots(OpenGate(), 1)).account_id
    for field in sorted(KNOWN_FIELDS - {"smtpEmailAddress"}):
        for value in AWKWARD:
            response = client.patch(f"/v1/email-accounts/{account_id}", json={field: value},
                                    headers={"x-api-key": api_key})
            assert response.status_code in (200, 422), (field, value, response.json)


@pytest.mark.parametrize("body", [[None], [[1]], [{"id": 1}], [1.5], [True], ["1"], [10**30]])
def test_reconnect_awkward_ids_are_invalid_rows(client, api_key, body):
    response = client.post("/v1/email-accounts/reconnect", json=body,
                           headers={"x-api-key": api_key})
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("delete", ""), ("post", "/test"),
                                                ("patch", "")])
def test_huge_account_ids_are_404(client, api_key, method, suffix):
    kwargs = {"json": {"maxEmailPerDay": 5}} if method == "patch" else {}
    response = getattr(client, method)(f"/v1/email-accounts/{10**30}{suffix}",
                                       headers={"x-api-key": api_key}, **kwargs)
    assert response.status_code == 404
    assert response.json["message"].startswith("id:")


def test_huge_status_request_id_is_404(client, api_key):
    response = client.get("/v1/email-accounts/connect/status/" + "f" * 500,
                          headers={"x-api-key": api_key})
    assert response.status_code == 404


def test_nul_characters_are_named_not_stored(client, api_key, services):
    row = {**bulk_row("nul@example.com"), "smtpPassword": "a\x00b", "odd\x00column": "x"}
    response = client.post("/v1/email-accounts/connect", json=[row, {"smtpEmailAddress": "\x00"}],
                           headers={"x-api-key": api_key})
    assert response.status_code == 200
    status = client.get(
        f"/v1/email-accounts/connect/status/{response.json['payload']['requestId']}",
        headers={"x-api-key": api_key}).json["payload"]
    assert status["invalid"] == 2
    assert status["ignoredColumns"] == ["oddcolumn"]
