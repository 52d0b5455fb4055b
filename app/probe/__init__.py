"""Test SMTP and IMAP logins of mailboxes: one hard deadline, exact server words, no raising.

Pure asyncio; nothing here may import Flask or Celery.
"""

from app.probe.errors import HostNotFound
from app.probe.hints import hint_for
from app.probe.model import (
    TRANSIENT_CODES,
    AccountProbe,
    AuthMethod,
    Encryption,
    Endpoint,
    ErrorCode,
    MailProtocol,
    ProbeSettings,
    ProtocolResult,
)
from app.probe.network import Resolver, SystemResolver
from app.probe.prober import Prober

__all__ = [
    "TRANSIENT_CODES",
    "AccountProbe",
    "AuthMethod",
    "Encryption",
    "Endpoint",
    "ErrorCode",
    "HostNotFound",
    "MailProtocol",
    "ProbeSettings",
    "Prober",
    "ProtocolResult",
    "Resolver",
    "SystemResolver",
    "hint_for",
]
