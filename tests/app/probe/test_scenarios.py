"""Every row of the verdict matrix (scenarios.py), for each protocol it covers: the exact code,
the time to the verdict, and whatever else the row promises. Plus: the README shows the matrix."""

from __future__ import annotations

import pytest

from app.probe import ErrorCode, Prober, ProbeSettings, hint_for
from tests.app.probe import scenarios
from tests.app.probe.conftest import TIMEOUT
from tests.app.probe.scenarios import ROWS, SCENARIOS, Scenario, Servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pki):
    with Servers(tmp_path_factory.mktemp("scenarios"), pki) as shared:
        yield shared


@pytest.fixture(scope="module")
def matrix_prober(pki) -> Prober:
    return scenarios.matrix_prober(pki, TIMEOUT)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_scenario(scenario: Scenario, servers: Servers, matrix_prober: Prober) -> None:
    outcome = scenarios.run(scenario, servers, matrix_prober)
    result, row = outcome.result, scenario.row
    assert result.error_code == scenario.expected, result
    assert result.ok == (scenario.expected is None)

    low, high = row.timing.window(TIMEOUT)
    assert low <= outcome.seconds <= high, (
        f"verdict after {outcome.seconds:.2f} s; {row.timing.name} wants {low:.1f}-{high:.1f} s"
    )
    if scenario.side.message_contains is not None:
        assert scenario.side.message_contains in (result.error or ""), result.error
    if row.password_never_sent:
        assert outcome.password_seen is False  # None would mean the row cannot prove it
    if row.hint_contains is not None:
        hint = hint_for(result.error_code, None, result.error)
        assert hint is not None and row.hint_contains in hint, hint


def test_port_mix_up_is_named_within_5_s_at_the_production_timeout(servers, pki) -> None:
    # With the 3 s test timeout the greeting wait is capped at half the deadline, so only the
    # production timeout shows whether the mix-up verdict really comes inside 5 s.
    production = ProbeSettings().timeout_seconds
    scenario = next(s for s in SCENARIOS if s.id == "imap-starttls-on-ssl-port")
    outcome = scenarios.run(scenario, servers, scenarios.matrix_prober(pki, production))
    assert outcome.result.error_code == ErrorCode.TLS_HANDSHAKE_FAILED
    assert outcome.seconds < scenarios.MISMATCH_SECONDS


def test_readme_shows_the_matrix() -> None:
    readme = scenarios.README.read_text(encoding="utf-8")
    assert scenarios.readme_block(readme) == scenarios.markdown_table(), (
        "README is stale: run python -m tests.app.probe.scenarios --write-readme"
    )


def test_write_readme_replaces_only_the_block(tmp_path) -> None:
    readme = tmp_path / "README.md"
    before, after = "# x\n\n### Error codes\n\n", "\n### `GET /healthz`\n"
    readme.write_text(f"{before}{scenarios.START_MARKER}\nstale\n{scenarios.END_MARKER}{after}")
    assert scenarios.write_readme(readme)
    text = readme.read_text()
    assert text.startswith(before + scenarios.START_MARKER) and text.endswith(
        scenarios.END_MARKER + after
    )
    assert scenarios.readme_block(text) == scenarios.markdown_table()
    assert not scenarios.write_readme(readme)  # a second run changes nothing


def test_matrix_is_well_formed() -> None:
    ids = [scenario.id for scenario in SCENARIOS]
    assert len(ids) == len(set(ids))
    assert all(row.smtp or row.imap for row in ROWS)
    assert all("|" not in row.name for row in ROWS)  # would break the Markdown table


def test_matrix_names_every_verdict_a_server_can_cause() -> None:
    # The four left out are decided before any mail server is involved, and tested where they
    # are made: host_blocked in test_network.py, internal_error in test_prober.py,
    # proxy_failed in test_proxy.py (through real proxies), oauth_refresh_failed in
    # tests/app/oauth (against a local token endpoint).
    expected = {scenario.expected for scenario in SCENARIOS}
    missing = set(ErrorCode) - expected - {ErrorCode.HOST_BLOCKED, ErrorCode.INTERNAL_ERROR,
                                           ErrorCode.PROXY_FAILED, ErrorCode.OAUTH_REFRESH_FAILED}
    assert not missing
    assert None in expected  # and success, too


def test_benchmark_covers_both_protocols() -> None:
    for row in ROWS:
        if row.bench:
            assert row.smtp is not None and row.imap is not None, row.key
