"""The IMAP login dialogue: greeting, CAPABILITY, STARTTLS, LOGIN or AUTHENTICATE (PLAIN, or
XOAUTH2 / OAUTHBEARER for OAuth2), EXAMINE INBOX, LOGOUT (RFC 3501 / 9051, 4959 SASL-IR,
7888 LITERAL+, 7628)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.credentials import Secret
from app.probe.classify import IMAP, imap_response_code, match_rule, oauth_refusal
from app.probe.errors import ConnectionClosed, ProbeError
from app.probe.model import AuthMethod, Encryption, ErrorCode
from app.probe.sasl import (
    OAUTH_ERROR_ACK,
    oauth_error_status,
    oauth_response,
    pick_oauth_mechanism,
    plain_response,
)
from app.probe.session import ProbeSession
from app.probe.streams import MailStream

_LITERAL_END = re.compile(rb"\{(\d{1,9})\+?\}$")
_CAPABILITY_CODE = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_SMTP_GREETING = re.compile(r"^\d{3}([ -]|$)")
_MAX_RESPONSE_BYTES = 1024 * 1024  # one response with literals; EXAMINE answers are tiny
_MAX_UNTAGGED = 10_000  # a server streaming endless untagged data is not going to answer
_KEEP_UNTAGGED = 20
_UNTAGGED_STATUS = re.compile(r"^(OK|NO|BAD|BYE)\b", re.IGNORECASE)
_SYNC_LITERAL_MAX = 4096  # RFC 7888 LITERAL-: non-synchronizing literals up to 4096 bytes


@dataclass
class Tagged:
    status: str  # OK, NO, BAD
    text: str  # the response without the tag: "NO [AUTHENTICATIONFAILED] Invalid credentials"
    untagged: list[str] = field(default_factory=list)


def _quotable(value: str) -> bool:
    return all(0 < ord(ch) < 0x80 and ch not in "\r\n" for ch in value)


def _quoted(value: str) -> bytes:
    return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"'


class ImapClient:
    def __init__(self, session: ProbeSession) -> None:
        self.session = session
        self.capabilities: set[str] | None = None
        self.bye: str | None = None
        self.continuation = ""  # the text of the last "+" line: a SASL challenge
        self._refused_token: str | None = None  # what an OAuth2 error challenge said
        self._tag = 0

    @property
    def conn(self) -> MailStream:
        return self.session.conn

    def next_tag(self) -> str:
        self._tag += 1
        return f"a{self._tag}"

    # --- reading ---

    async def read_response(self) -> str:
        """One response line with any literals it carries inlined. Only untagged data carries
        literals: a tagged or '+' line's text may end in "{5}" (an echo of our own command)."""
        data = await self.conn.readline()
        while data.startswith(b"* ") and (literal := _LITERAL_END.search(data)) is not None:
            size = int(literal.group(1))
            if len(data) + size > _MAX_RESPONSE_BYTES:
                raise ProbeError(ErrorCode.PROTOCOL_ERROR, "response too large")
            data += b"\r\n" + await self.conn.readexactly(size) + await self.conn.readline()
        return data.decode("utf-8", "replace")

    async def wait_tagged(self, tag: str, *, continuation: bool = False) -> Tagged | None:
        """Read until the tagged completion of `tag` (or a '+' when `continuation`: then None)."""
        untagged: list[str] = []  # only status responses: they may explain a refusal
        seen = 0
        try:
            while True:
                line = await self.read_response()
                if line.startswith("* "):
                    self._note_untagged(line[2:])
                    if _UNTAGGED_STATUS.match(line[2:]) and len(untagged) < _KEEP_UNTAGGED:
                        untagged.append(line[2:])
                    seen += 1
                    if seen > _MAX_UNTAGGED:
                        raise ProbeError(ErrorCode.PROTOCOL_ERROR, "too many untagged responses")
                    continue
                if line.startswith("+") and continuation:
                    self.continuation = line[1:].strip()
                    return None
                head, _, rest = line.partition(" ")
                if head == tag:
                    status = rest.split(" ", 1)[0].upper()
                    if status not in ("OK", "NO", "BAD"):
                        raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"malformed response: {line}")
                    return Tagged(status, rest, untagged)
                raise ProbeError(
                    ErrorCode.PROTOCOL_ERROR, f"unexpected response ({self.session.stage}): {line}"
                )
        except ConnectionClosed:
            if self.bye is not None:  # "* BYE <reason>" then close: the reason is the verdict
                raise self.refusal(f"BYE {self.bye}", [], ErrorCode.CONNECTION_CLOSED) from None
            raise

    def _note_untagged(self, text: str) -> None:
        head, _, rest = text.partition(" ")
        upper = head.upper()
        if upper == "BYE":
            self.bye = rest
        elif upper == "CAPABILITY":
            self.capabilities = {c.upper() for c in rest.split()}

    # --- writing ---

    async def send(self, tag: str, *parts: bytes | str | Secret) -> Tagged:
        """Send a command whose parts are raw bytes, or strings (and secrets) to send as IMAP
        strings: quoted when possible, else a literal."""
        buffer = tag.encode("ascii") + b" "
        for part in parts:
            if isinstance(part, bytes):
                buffer += part
                continue
            value = part.reveal() if isinstance(part, Secret) else part
            if _quotable(value):
                buffer += _quoted(value)
                continue
            raw = value.encode("utf-8")
            if self._non_sync_literal_ok(len(raw)):
                buffer += b"{%d+}\r\n" % len(raw) + raw
                continue
            self.conn.write(buffer + b"{%d}\r\n" % len(raw))
            buffer = b""
            reply = await self.wait_tagged(tag, continuation=True)
            if reply is not None:  # the server refused the literal instead of saying "+"
                return reply
            buffer = raw
        self.conn.write(buffer + b"\r\n")
        reply = await self.wait_tagged(tag)
        assert reply is not None
        return reply

    def _non_sync_literal_ok(self, size: int) -> bool:
        caps = self.capabilities or set()
        return "LITERAL+" in caps or ("LITERAL-" in caps and size <= _SYNC_LITERAL_MAX)

    # --- verdicts ---

    def refusal(self, text: str, untagged: list[str], default: ErrorCode) -> ProbeError:
        """Classify the tagged text, else an untagged NO/BAD/ALERT that came with it."""
        alerts = [u for u in untagged if not u.upper().startswith("OK") or "[ALERT]" in u.upper()]
        rule = next(
            (r for c in (text, *alerts) if (r := match_rule(IMAP, imap_response_code(c), c))),
            None,
        )
        message = " / ".join([text, *alerts[:2]])
        if rule is None:
            return ProbeError(default, message)
        if rule.note:
            message = f"{message} ({rule.note})"
        return ProbeError(rule.error_code, message)

    # --- the dialogue ---

    async def greeting(self) -> bool:
        """Read the greeting; True if the server pre-authenticated us."""
        self.session.stage = "waiting for the greeting"
        await self.session.wait_for_greeting()
        line = await self.read_response()
        upper = line.upper()
        if _SMTP_GREETING.match(line):
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR,
                f"the server greets like SMTP ({line}): the IMAP host/port may point at SMTP",
            )
        if upper.startswith("+OK"):
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR,
                f"the server greets like POP3 ({line}): the IMAP host/port may point at POP3",
            )
        if upper.startswith("* BYE"):
            raise self.refusal(line[2:], [], ErrorCode.CONNECTION_CLOSED)
        if not upper.startswith(("* OK", "* PREAUTH")):
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"not an IMAP greeting: {line}")
        self._capabilities_from(line)
        return upper.startswith("* PREAUTH")

    def _capabilities_from(self, text: str) -> None:
        match = _CAPABILITY_CODE.search(text)
        if match:
            self.capabilities = {c.upper() for c in match.group(1).split()}

    async def ensure_capabilities(self) -> set[str]:
        if self.capabilities is None:
            self.session.stage = "CAPABILITY"
            reply = await self.send(self.next_tag(), b"CAPABILITY")
            if reply.status != "OK" or self.capabilities is None:
                raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"CAPABILITY failed: {reply.text}")
        return self.capabilities

    async def starttls(self, preauth: bool) -> None:
        self.session.stage = "STARTTLS"
        if preauth:
            raise ProbeError(
                ErrorCode.STARTTLS_UNSUPPORTED,
                "the server pre-authenticated the plaintext connection, so STARTTLS is "
                "impossible; the password was not sent",
            )
        if "STARTTLS" not in await self.ensure_capabilities():
            raise ProbeError(
                ErrorCode.STARTTLS_UNSUPPORTED,
                "the server does not offer STARTTLS; the password was not sent",
            )
        reply = await self.send(self.next_tag(), b"STARTTLS")
        if reply.status != "OK":
            raise self.refusal(reply.text, reply.untagged, ErrorCode.STARTTLS_UNSUPPORTED)
        await self.session.upgrade()
        self.capabilities = None  # RFC 3501 6.2.1: discard what was learnt in the clear

    async def login(self) -> None:
        caps = await self.ensure_capabilities()
        endpoint = self.session.endpoint
        tag = self.next_tag()
        if endpoint.auth == AuthMethod.OAUTH2:
            await self._login_oauth(tag, caps)
            return
        if "LOGINDISABLED" not in caps:
            self.session.stage = "LOGIN"
            reply = await self.send(
                tag, b"LOGIN ", endpoint.username, b" ", endpoint.password
            )
        elif "AUTH=PLAIN" in caps:
            self.session.stage = "AUTHENTICATE PLAIN"
            response = plain_response(endpoint.username, endpoint.password)
            reply = await self._authenticate(tag, b"PLAIN", response, "SASL-IR" in caps)
        else:
            hint = "" if self.conn.tls else " on an unencrypted connection (try starttls or ssl)"
            raise ProbeError(
                ErrorCode.AUTH_MECHANISM_UNSUPPORTED,
                f"the server disables LOGIN and offers no AUTHENTICATE PLAIN{hint}",
            )
        if reply.status != "OK":
            # NO is the server's "no such login"; BAD means it did not understand us.
            default = ErrorCode.AUTH_FAILED if reply.status == "NO" else ErrorCode.PROTOCOL_ERROR
            raise self.refusal(reply.text, reply.untagged, default)

    async def _login_oauth(self, tag: str, caps: set[str]) -> None:
        endpoint = self.session.endpoint
        offered = {c.removeprefix("AUTH=") for c in caps if c.startswith("AUTH=")}
        mechanism = pick_oauth_mechanism(offered)
        if mechanism is None:
            raise ProbeError(
                ErrorCode.AUTH_MECHANISM_UNSUPPORTED,
                "no OAuth2 AUTHENTICATE mechanism, XOAUTH2 or OAUTHBEARER (server offers: "
                f"{' '.join(sorted(offered)) or 'none'}); the token was not sent",
            )
        self.session.stage = f"AUTHENTICATE {mechanism}"
        response = oauth_response(mechanism, endpoint.username, endpoint.password)
        reply = await self._authenticate(
            tag, mechanism.encode("ascii"), response, "SASL-IR" in caps,
            error_ack=OAUTH_ERROR_ACK[mechanism],
        )
        if reply.status == "OK":
            return
        # NO: the token was refused; BAD: the server did not understand us.
        default = (
            ErrorCode.OAUTH_TOKEN_INVALID if reply.status == "NO" else ErrorCode.PROTOCOL_ERROR
        )
        error = self.refusal(reply.text, reply.untagged, default)
        raise oauth_refusal(error, self._refused_token)

    async def _authenticate(
        self,
        tag: str,
        mechanism: bytes,
        response: bytes,
        initial_response: bool,
        *,
        error_ack: bytes | None = None,
    ) -> Tagged:
        """AUTHENTICATE with a one-step mechanism. `error_ack`: the answer to an error
        challenge after the response (OAuth2's JSON error); without it any challenge there is
        cancelled, as PLAIN has none."""
        self._refused_token = None
        command = tag.encode("ascii") + b" AUTHENTICATE " + mechanism
        if initial_response:  # RFC 4959: the credentials ride on the command line
            self.conn.write(command + b" " + response + b"\r\n")
        else:
            self.conn.write(command + b"\r\n")
            reply = await self.wait_tagged(tag, continuation=True)
            if reply is not None:
                return reply
            self.conn.write(response + b"\r\n")
        reply = await self.wait_tagged(tag, continuation=True)
        if reply is None and error_ack is not None:
            # The server refused the token and explains why before its NO.
            self._refused_token = oauth_error_status(self.continuation)
            self.conn.write(error_ack + b"\r\n")
            reply = await self.wait_tagged(tag, continuation=True)
        if reply is None:  # a challenge the mechanism has no answer for: cancel (RFC 3501 6.2.2)
            self.conn.write(b"*\r\n")
            reply = await self.wait_tagged(tag)
            assert reply is not None
        return reply

    async def examine_inbox(self) -> None:
        self.session.stage = "EXAMINE INBOX"
        reply = await self.send(self.next_tag(), b"EXAMINE INBOX")
        if reply.status != "OK":
            raise self.refusal(reply.text, reply.untagged, ErrorCode.MAILBOX_UNAVAILABLE)

    async def logout(self) -> None:
        await self.send(self.next_tag(), b"LOGOUT")


async def run_imap(session: ProbeSession) -> None:
    """Log in over an open connection; return on success, raise ProbeError otherwise."""
    client = ImapClient(session)
    preauth = await client.greeting()
    if session.endpoint.encryption == Encryption.STARTTLS:
        await client.starttls(preauth)
    if not preauth:
        await client.login()
    await client.examine_inbox()
    session.succeeded = True
    await session.goodbye(client.logout)
