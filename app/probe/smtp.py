"""The SMTP login dialogue: greeting, EHLO, STARTTLS, AUTH, QUIT (RFC 5321, 3207, 4954)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.probe.classify import classify_smtp, oauth_refusal
from app.probe.errors import ProbeError
from app.probe.model import AuthMethod, Encryption, ErrorCode
from app.probe.sasl import (
    OAUTH_ERROR_ACK,
    login_password,
    login_username,
    oauth_error_status,
    oauth_response,
    pick_oauth_mechanism,
    plain_response,
)
from app.probe.session import ProbeSession

_REPLY_LINE = re.compile(r"^(\d{3})([ -]|$)(.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\s+")
_MAX_REPLY_LINES = 100  # real EHLO replies have ~15 lines; more means something is wrong


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply's text on one line; an enhanced code repeated on every line is kept once."""
        first, rest = self.lines[0], self.lines[1:]
        enhanced = _ENHANCED.match(first)
        if enhanced:
            rest = tuple(line.removeprefix(enhanced.group(0)) for line in rest)
        return " ".join(part.strip() for part in (first, *rest) if part.strip())

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


def _decode(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def _looks_like_other_protocol(line: str) -> str | None:
    upper = line.upper()
    if upper.startswith(("* OK", "* PREAUTH", "* BYE")):
        return f"the server greets like IMAP ({line}): the SMTP host/port may point at IMAP"
    if upper.startswith("+OK"):
        return f"the server greets like POP3 ({line}): the SMTP host/port may point at POP3"
    return None


async def read_reply(session: ProbeSession, *, greeting: bool = False) -> Reply:
    conn = session.conn
    lines: list[str] = []
    code: str | None = None
    while True:
        line = _decode(await conn.readline())
        match = _REPLY_LINE.match(line)
        if match is None or (code is not None and match.group(1) != code):
            other = _looks_like_other_protocol(line) if greeting and not lines else None
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR, other or f"not an SMTP reply ({session.stage}): {line}"
            )
        code = match.group(1)
        lines.append(match.group(3))
        if match.group(2) != "-":
            return Reply(int(code), tuple(lines))
        if len(lines) >= _MAX_REPLY_LINES:
            raise ProbeError(
                ErrorCode.PROTOCOL_ERROR, f"reply longer than {_MAX_REPLY_LINES} lines"
            )


async def command(session: ProbeSession, line: str) -> Reply:
    session.conn.write(line.encode("ascii") + b"\r\n")
    return await read_reply(session)


def refusal(reply: Reply, default: ErrorCode) -> ProbeError:
    verdict = classify_smtp(reply.code, reply.text, default)
    message = str(reply) if verdict.note is None else f"{reply} ({verdict.note})"
    return ProbeError(verdict.code, message)


def _extensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords -> parameters; the first line is the server's name, not an extension."""
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword.upper().startswith("AUTH="):  # pre-RFC 4954 form: "AUTH=LOGIN PLAIN"
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        key = keyword.upper()
        found[key] = f"{found.get(key, '')} {params}".strip()
    return found


async def _hello(session: ProbeSession) -> dict[str, str]:
    session.stage = "EHLO"
    name = session.settings.local_hostname
    reply = await command(session, f"EHLO {name}")
    if reply.code == 250:
        return _extensions(reply)
    if reply.code == 421 or 400 <= reply.code < 500:
        raise refusal(reply, ErrorCode.SERVER_THROTTLED)
    session.stage = "HELO"  # an old server without ESMTP: no extensions, so no STARTTLS or AUTH
    reply = await command(session, f"HELO {name}")
    if reply.code != 250:
        raise refusal(reply, ErrorCode.PROTOCOL_ERROR)
    return {}


async def _authenticate(session: ProbeSession, extensions: dict[str, str]) -> None:
    session.stage = "AUTH"
    endpoint = session.endpoint
    if "AUTH" not in extensions:
        hint = "" if session.conn.tls else " on an unencrypted connection (try starttls or ssl)"
        raise ProbeError(
            ErrorCode.AUTH_MECHANISM_UNSUPPORTED, f"the server offers no AUTH{hint}"
        )
    mechanisms = extensions["AUTH"].upper().split()
    if endpoint.auth == AuthMethod.OAUTH2:
        await _authenticate_oauth(session, mechanisms)
        return
    if "PLAIN" in mechanisms:
        session.conn.write(
            b"AUTH PLAIN " + plain_response(endpoint.username, endpoint.password) + b"\r\n"
        )
        reply = await read_reply(session)
    elif "LOGIN" in mechanisms:
        reply = await command(session, "AUTH LOGIN")
        if reply.code == 334:
            session.conn.write(login_username(endpoint.username) + b"\r\n")
            reply = await read_reply(session)
        if reply.code == 334:
            session.conn.write(login_password(endpoint.password) + b"\r\n")
            reply = await read_reply(session)
    else:
        raise ProbeError(
            ErrorCode.AUTH_MECHANISM_UNSUPPORTED,
            f"no supported AUTH mechanism (server offers: {' '.join(mechanisms) or 'none'})",
        )
    if reply.code == 235:
        return
    if reply.code == 334:  # a challenge we have no answer for: cancel (RFC 4954 section 4)
        reply = await command(session, "*")
        raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"unexpected AUTH challenge; then: {reply}")
    raise refusal(reply, ErrorCode.AUTH_FAILED)


async def _authenticate_oauth(session: ProbeSession, mechanisms: list[str]) -> None:
    endpoint = session.endpoint
    mechanism = pick_oauth_mechanism(set(mechanisms))
    if mechanism is None:
        raise ProbeError(
            ErrorCode.AUTH_MECHANISM_UNSUPPORTED,
            "no OAuth2 AUTH mechanism, XOAUTH2 or OAUTHBEARER "
            f"(server offers: {' '.join(mechanisms) or 'none'}); the token was not sent",
        )
    session.stage = f"AUTH {mechanism}"
    session.conn.write(
        f"AUTH {mechanism} ".encode("ascii")
        + oauth_response(mechanism, endpoint.username, endpoint.password)
        + b"\r\n"
    )
    reply = await read_reply(session)
    status = None
    if reply.code == 334:  # the token was refused: a JSON error, then 535 once acknowledged
        status = oauth_error_status(reply.text)
        session.conn.write(OAUTH_ERROR_ACK[mechanism] + b"\r\n")
        reply = await read_reply(session)
    if reply.code == 235:
        return
    if reply.code == 334:  # a second challenge has no meaning here: cancel (RFC 4954)
        reply = await command(session, "*")
        raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"unexpected AUTH challenge; then: {reply}")
    error = refusal(reply, ErrorCode.OAUTH_TOKEN_INVALID)
    raise oauth_refusal(error, status)


async def _quit(session: ProbeSession) -> None:
    await command(session, "QUIT")


async def run_smtp(session: ProbeSession) -> None:
    """Log in over an open connection; return on success, raise ProbeError otherwise."""
    await session.wait_for_greeting()
    greeting = await read_reply(session, greeting=True)
    if greeting.code != 220:
        raise refusal(greeting, ErrorCode.CONNECTION_CLOSED)
    extensions = await _hello(session)
    if session.endpoint.encryption == Encryption.STARTTLS:
        session.stage = "STARTTLS"
        if "STARTTLS" not in extensions:
            raise ProbeError(
                ErrorCode.STARTTLS_UNSUPPORTED,
                "the server does not offer STARTTLS; the password was not sent",
            )
        reply = await command(session, "STARTTLS")
        if reply.code != 220:
            raise refusal(reply, ErrorCode.STARTTLS_UNSUPPORTED)
        await session.upgrade()
        extensions = await _hello(session)  # RFC 3207: forget everything learnt before TLS
    await _authenticate(session, extensions)
    session.succeeded = True
    await session.goodbye(lambda: _quit(session))
