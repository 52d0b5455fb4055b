"""The probe's vocabulary: what the rest of the service may rely on."""

from __future__ import annotations

from app.probe import TRANSIENT_CODES, ErrorCode


def test_transient_codes_are_the_ones_worth_retrying() -> None:
    assert {
        ErrorCode.CONNECTION_TIMEOUT,
        ErrorCode.CONNECTION_CLOSED,
        ErrorCode.SERVER_THROTTLED,
        ErrorCode.DNS_NOT_FOUND,
    } == TRANSIENT_CODES
    assert ErrorCode.ACCOUNT_LOCKED not in TRANSIENT_CODES  # retrying extends a lockout
