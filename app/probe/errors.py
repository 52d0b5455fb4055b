"""Exceptions that carry a verdict out of the protocol dialogues.

Only `Prober` turns them into `ProtocolResult`s, so scrubbing and truncation happen in one place.
"""

from __future__ import annotations

from app.probe.model import ErrorCode


class ProbeError(Exception):
    """The dialogue reached a verdict other than success."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class HostNotFound(Exception):
    """The host name does not resolve (NXDOMAIN, no address, or not a valid name)."""


class ConnectionClosed(Exception):
    """The peer closed the connection while a reply was still expected."""


class LineTooLong(Exception):
    """The peer sent more bytes than any sane reply line holds."""
