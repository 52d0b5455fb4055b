"""Each provider's published SMTP and IMAP servers, used to fill what a submitted row leaves out.

Plain dict lookups: validation runs for every row of a 10,000-row request.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from app.probe.model import Encryption

ProtocolName = Literal["smtp", "imap"]


@dataclass(frozen=True, slots=True)
class ServerPreset:
    host: str
    port: int
    encryption: Encryption


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    smtp: ServerPreset
    imap: ServerPreset | None  # None for relays: they have no mailbox to log into

    def server(self, protocol: ProtocolName) -> ServerPreset | None:
        return self.smtp if protocol == "smtp" else self.imap


def _preset(smtp: tuple[str, int, Encryption],
            imap: tuple[str, int, Encryption] | None = None) -> ProviderPreset:
    return ProviderPreset(ServerPreset(*smtp), ServerPreset(*imap) if imap else None)


_SSL, _STARTTLS = Encryption.SSL, Encryption.STARTTLS
_GOOGLE = _preset(("smtp.gmail.com", 465, _SSL), ("imap.gmail.com", 993, _SSL))
_MICROSOFT = _preset(("smtp.office365.com", 587, _STARTTLS), ("outlook.office365.com", 993, _SSL))

# Keys are names from app.accounts.providers.PROVIDERS; "smtp", "custom" and "other" have none.
PRESETS: MappingProxyType[str, ProviderPreset] = MappingProxyType({
    "gmail": _GOOGLE,
    "gsuite": _GOOGLE,
    "microsoft": _MICROSOFT,
    "o365": _MICROSOFT,
    "outlook": _MICROSOFT,
    "yahoo": _preset(("smtp.mail.yahoo.com", 465, _SSL), ("imap.mail.yahoo.com", 993, _SSL)),
    "zoho": _preset(("smtp.zoho.com", 465, _SSL), ("imap.zoho.com", 993, _SSL)),
    "yandex": _preset(("smtp.yandex.com", 465, _SSL), ("imap.yandex.com", 993, _SSL)),
    "godaddy": _preset(("smtpout.secureserver.net", 465, _SSL),
                       ("imap.secureserver.net", 993, _SSL)),
    "icloud": _preset(("smtp.mail.me.com", 587, _STARTTLS), ("imap.mail.me.com", 993, _SSL)),
    "aol": _preset(("smtp.aol.com", 465, _SSL), ("imap.aol.com", 993, _SSL)),
    "sendgrid": _preset(("smtp.sendgrid.net", 587, _STARTTLS)),
    "mailgun": _preset(("smtp.mailgun.org", 587, _STARTTLS)),
    "ses": _preset(("email-smtp.us-east-1.amazonaws.com", 587, _STARTTLS)),
})

# Relays with no mailbox to log into: IMAP is not theirs to test.
SMTP_ONLY_PROVIDERS: frozenset[str] = frozenset(
    name for name, preset in PRESETS.items() if preset.imap is None
)
