"""What a server's refusal means, as data.

One ordered table: (protocol, code, regex on the text) -> ErrorCode, first match wins. Specific
provider texts come first, generic code-based defaults last; when nothing matches the caller's
default for the dialogue step applies (a refused LOGIN is auth_failed, a refused EXAMINE is
mailbox_unavailable). Texts come from providers' real replies (see the field notes); extend the
table rather than adding branches in the clients.

`code` means: SMTP - a prefix of the three-digit reply code ("535", or "4" for every 4xx);
IMAP - the bracketed response code atom ("AUTHENTICATIONFAILED" for "NO [AUTHENTICATIONFAILED]").
The SMTP text includes the enhanced status code ("5.7.9 Application-specific ..."); the IMAP
text is the whole response after the tag ("NO [ALERT] ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.probe.errors import ProbeError
from app.probe.model import ErrorCode, MailProtocol

SMTP, IMAP = MailProtocol.SMTP, MailProtocol.IMAP
E = ErrorCode


@dataclass(frozen=True, slots=True)
class Rule:
    protocol: MailProtocol | None  # None: both
    code: str | None  # None: any
    pattern: re.Pattern[str] | None  # None: any text
    error_code: ErrorCode
    note: str | None = None  # appended to the stored message when the server text is terse


@dataclass(frozen=True, slots=True)
class Verdict:
    code: ErrorCode
    note: str | None = None


def _rule(
    protocol: MailProtocol | None,
    code: str | None,
    text: str | None,
    error_code: ErrorCode,
    note: str | None = None,
) -> Rule:
    pattern = re.compile(text, re.IGNORECASE) if text is not None else None
    return Rule(protocol, code, pattern, error_code, note)


_UNUSABLE_LOGIN = (
    "the login was accepted but the session is not usable: often a wrong password or a "
    "shared mailbox"
)

RULES: tuple[Rule, ...] = (
    # --- Transport texts (ssl module errors also go through the table) ---
    _rule(None, None, r"wrong version number|unknown protocol|record layer failure",
          E.TLS_HANDSHAKE_FAILED),
    _rule(None, None, r"certificate verify failed", E.TLS_CERTIFICATE_INVALID),
    # --- App passwords / browser sign-in (Gmail, iCloud, Yahoo) ---
    _rule(SMTP, "534", r"\b5\.7\.9\b", E.APP_PASSWORD_REQUIRED),
    _rule(None, None, r"application[- ]specific password", E.APP_PASSWORD_REQUIRED),
    _rule(SMTP, "534", r"\b5\.7\.14\b", E.WEB_LOGIN_REQUIRED),
    _rule(IMAP, "WEBALERT", None, E.WEB_LOGIN_REQUIRED),
    _rule(None, None, r"log\s*in via your web browser|web login required", E.WEB_LOGIN_REQUIRED),
    # --- Lockouts and throttling (before the generic auth texts they may contain) ---
    _rule(None, None, r"#AUTH005|too many bad auth", E.ACCOUNT_LOCKED),
    _rule(None, None,
          r"too many (simultaneous |concurrent )?(connections|sessions)"
          r"|maximum number of connections|connection limit|throttl|rate.?limit"
          r"|too many (login|auth\w*) attempts|try again later",
          E.SERVER_THROTTLED),
    _rule(IMAP, "UNAVAILABLE", None, E.SERVER_THROTTLED),
    _rule(IMAP, "INUSE", None, E.SERVER_THROTTLED),
    # --- Microsoft 365: one code (5.7.139), several meanings; read the text ---
    _rule(None, None, r"user credentials were incorrect", E.AUTH_FAILED),
    _rule(None, None,
          r"basic authentication is disabled|SmtpClientAuthentication is disabled"
          r"|security defaults policy|did not meet the criteria to be authenticated",
          E.BASIC_AUTH_DISABLED, "password sign-in is turned off; an App Password will not help"),
    # Exchange Online once basic authentication is retired for SMTP AUTH (550 5.7.30).
    _rule(None, None, r"basic authentication is not supported",
          E.BASIC_AUTH_DISABLED, "only OAuth2 is accepted for this mailbox"),
    # --- The protocol itself switched off for the account (Gmail, Yandex) ---
    _rule(IMAP, None, r"IMAP (access )?is disabled|not enabled for IMAP|IMAP (access )?disabled",
          E.BASIC_AUTH_DISABLED, "IMAP access must be enabled in the mailbox's web settings"),
    # --- Office 365: LOGIN "succeeds", then every command fails ---
    _rule(IMAP, None, r"User is authenticated but not connected", E.AUTH_FAILED, _UNUSABLE_LOGIN),
    # --- Yahoo answers a normal password with exactly this (App Password needed) ---
    _rule(IMAP, "AUTHENTICATIONFAILED", r"\]\s*LOGIN Invalid credentials\s*\.?\s*$",
          E.APP_PASSWORD_REQUIRED, "Yahoo requires an App Password for IMAP"),
    _rule(None, None, r"account (is )?(locked|disabled|suspended|blocked)", E.ACCOUNT_LOCKED),
    # --- IMAP response codes (RFC 5530) ---
    _rule(IMAP, "AUTHENTICATIONFAILED", None, E.AUTH_FAILED),
    _rule(IMAP, "AUTHORIZATIONFAILED", None, E.AUTH_FAILED),
    _rule(IMAP, "EXPIRED", None, E.AUTH_FAILED),
    _rule(IMAP, "PRIVACYREQUIRED", None, E.AUTH_MECHANISM_UNSUPPORTED,
          "the server refuses passwords on this connection: use starttls or ssl"),
    _rule(IMAP, "NONEXISTENT", None, E.MAILBOX_UNAVAILABLE),
    # --- SMTP reply codes ---
    _rule(SMTP, "421", None, E.SERVER_THROTTLED),
    _rule(SMTP, "454", r"\b4\.7\.0\b", E.SERVER_THROTTLED),
    _rule(SMTP, "4", None, E.SERVER_THROTTLED),
    _rule(SMTP, "504", None, E.AUTH_MECHANISM_UNSUPPORTED),
    _rule(SMTP, "534", r"too weak", E.AUTH_MECHANISM_UNSUPPORTED),
    _rule(SMTP, "538", None, E.AUTH_MECHANISM_UNSUPPORTED,
          "the server wants TLS before AUTH: use starttls or ssl"),
    _rule(SMTP, "530", r"STARTTLS|TLS|encrypt", E.AUTH_MECHANISM_UNSUPPORTED,
          "the server wants TLS before AUTH: use starttls or ssl"),
    _rule(SMTP, "535", None, E.AUTH_FAILED),
    # --- Generic wording, any code ---
    _rule(None, None,
          r"invalid credentials|authentication (failed|unsuccessful)|not accepted"
          r"|incorrect (password|username)|bad (password|credentials)",
          E.AUTH_FAILED),
)

# On an OAuth2 login the server's "wrong password" words ("535 5.7.8 Authentication failed",
# "NO [AUTHENTICATIONFAILED]", Gmail's "Username and Password not accepted") mean that it refused
# the token; throttling, lockouts, disabled SMTP AUTH and the rest keep their meaning.
_TOKEN_REFUSALS = frozenset({E.AUTH_FAILED, E.APP_PASSWORD_REQUIRED})


def oauth_refusal(error: ProbeError, status: str | None) -> ProbeError:
    """A refused OAuth2 login's verdict, from the classified refusal and what the server's
    JSON error challenge said (`status`, None when it sent none)."""
    code = E.OAUTH_TOKEN_INVALID if error.code in _TOKEN_REFUSALS else error.code
    message = error.message if status is None else f"{error.message} (token refused: {status})"
    return ProbeError(code, message)


_IMAP_CODE = re.compile(r"^(?:OK|NO|BAD|BYE|PREAUTH)\s+\[([A-Za-z0-9.-]+)", re.IGNORECASE)


def imap_response_code(text: str) -> str | None:
    """The response code atom of an IMAP status response: 'NO [UNAVAILABLE] x' -> 'UNAVAILABLE'."""
    match = _IMAP_CODE.match(text.strip())
    return match.group(1).upper() if match else None


def _matches(rule: Rule, protocol: MailProtocol, code: str | None, text: str) -> bool:
    if rule.protocol is not None and rule.protocol != protocol:
        return False
    if rule.code is not None:
        if code is None:
            return False
        if protocol == SMTP and not code.startswith(rule.code):
            return False
        if protocol == IMAP and code.upper() != rule.code:
            return False
    return rule.pattern is None or rule.pattern.search(text) is not None


def match_rule(protocol: MailProtocol, code: str | None, text: str) -> Rule | None:
    """The first rule matching (protocol, code, text), if any."""
    return next((rule for rule in RULES if _matches(rule, protocol, code, text)), None)


def classify(
    protocol: MailProtocol, code: str | None, text: str, default: ErrorCode
) -> Verdict:
    """The first matching rule's verdict, else the caller's default for the dialogue step."""
    rule = match_rule(protocol, code, text)
    return Verdict(default) if rule is None else Verdict(rule.error_code, rule.note)


def classify_smtp(code: int | str, text: str, default: ErrorCode = E.AUTH_FAILED) -> Verdict:
    return classify(SMTP, str(code), text, default)


def classify_imap(text: str, default: ErrorCode = E.AUTH_FAILED) -> Verdict:
    """text: an IMAP response without its tag, e.g. 'NO [AUTHENTICATIONFAILED] Invalid ...'."""
    return classify(IMAP, imap_response_code(text), text, default)
