"""Prober: run one account's SMTP and IMAP login checks and turn every outcome into a result.

A probe never raises. One hard deadline (settings.timeout_seconds) covers everything from DNS to
the last reply; every message is scrubbed of the password before it leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
from collections.abc import Awaitable, Callable

from app import metrics
from app.probe.background import LoopThread
from app.probe.classify import classify
from app.probe.errors import ConnectionClosed, HostNotFound, LineTooLong, ProbeError
from app.probe.imap import run_imap
from app.probe.model import (
    AccountProbe,
    Encryption,
    Endpoint,
    ErrorCode,
    MailProtocol,
    ProbeSettings,
    ProtocolResult,
)
from app.probe.network import Resolver, SystemResolver
from app.probe.scrub import Scrubber
from app.probe.session import ProbeSession, is_plaintext_reply
from app.probe.smtp import run_smtp

log = logging.getLogger(__name__)

Dialogue = Callable[[ProbeSession], Awaitable[None]]
_DIALOGUES: dict[MailProtocol, Dialogue] = {
    MailProtocol.SMTP: run_smtp,
    MailProtocol.IMAP: run_imap,
}


def build_ssl_context(extra_ca_file: str | None) -> ssl.SSLContext:
    # ~25 ms of CPU (loads the CA bundle): once per Prober, shared by every probe and thread.
    context = ssl.create_default_context()
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
    return context


class Prober:
    def __init__(self, settings: ProbeSettings, resolver: Resolver | None = None,
                 loop: LoopThread | None = None) -> None:
        self.settings = settings
        self.resolver: Resolver = resolver if resolver is not None else SystemResolver()
        self.ssl_context = build_ssl_context(settings.extra_ca_file)
        self._loop = loop if loop is not None else LoopThread("probe-loop")

    async def probe_smtp(self, endpoint: Endpoint) -> ProtocolResult:
        return await self._probe(MailProtocol.SMTP, endpoint)

    async def probe_imap(self, endpoint: Endpoint) -> ProtocolResult:
        return await self._probe(MailProtocol.IMAP, endpoint)

    async def probe(self, smtp: Endpoint | None, imap: Endpoint | None) -> AccountProbe:
        loop = asyncio.get_running_loop()
        started = loop.time()
        smtp_result, imap_result = await asyncio.gather(
            self._maybe(MailProtocol.SMTP, smtp), self._maybe(MailProtocol.IMAP, imap)
        )
        return AccountProbe(
            smtp=smtp_result,
            imap=imap_result,
            duration_ms=round((loop.time() - started) * 1000),
        )

    def probe_sync(self, smtp: Endpoint | None, imap: Endpoint | None) -> AccountProbe:
        """For worker and web threads: the probe runs on this Prober's event loop thread.

        One loop serving every thread's probes wakes once for all ready sockets; a loop per
        thread costs a loop's setup and teardown per probe and a GIL hand-off per wake-up.
        """
        return self._loop.run(self.probe(smtp, imap))

    async def _maybe(self, protocol: MailProtocol, endpoint: Endpoint | None) -> ProtocolResult:
        if endpoint is None:
            return ProtocolResult.skipped()
        return await self._probe(protocol, endpoint)

    async def _probe(self, protocol: MailProtocol, endpoint: Endpoint) -> ProtocolResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        detected = None
        try:
            code, message, detected = await self._dialogue(protocol, endpoint)
            error = None if code is None else self._scrubbed(endpoint, message)
        except Exception as exc:  # noqa: BLE001 - e.g. an Endpoint of the wrong types
            code, error = _internal_error(protocol, endpoint, exc)
        elapsed = loop.time() - started
        metrics.protocol_probed(protocol.value, code, elapsed)
        return ProtocolResult(
            outcome="ok" if code is None else "failed",
            error_code=code,
            error=error,
            duration_ms=round(elapsed * 1000),
            detected=detected,
        )

    def _scrubbed(self, endpoint: Endpoint, message: str) -> str:
        error = Scrubber(endpoint.username, endpoint.password).clean(message)
        proxy = endpoint.proxy or self.settings.default_proxy
        if proxy is not None and proxy.password:
            error = Scrubber(proxy.username or "", proxy.password).clean(error)
        return error

    async def _dialogue(
        self, protocol: MailProtocol, endpoint: Endpoint
    ) -> tuple[ErrorCode | None, str, Encryption | None]:
        session = ProbeSession(endpoint, self.settings, self.ssl_context)
        try:
            code, message = await self._run(protocol, session)
            if code == ErrorCode.STARTTLS_UNSUPPORTED and session.plaintext_port:
                message += (" (no encryption was given: the port answers in plaintext, not "
                            "implicit TLS; only encryption none would send the password "
                            "unencrypted)")
            return code, message, session.detected
        finally:
            session.close()

    async def _run(
        self, protocol: MailProtocol, session: ProbeSession
    ) -> tuple[ErrorCode | None, str]:
        """(None, "") on success, else (code, unscrubbed message)."""
        timeout = self.settings.timeout_seconds
        try:
            async with asyncio.timeout(timeout) as deadline:
                session.deadline = deadline.when() or 0.0
                await session.connect(self.resolver)
                await _DIALOGUES[protocol](session)
            return None, ""
        except ProbeError as exc:
            return exc.code, exc.message
        except TimeoutError:
            if session.succeeded:
                return None, ""
            # A proxy that never finishes its handshake is the proxy's failure, not the server's.
            code = ErrorCode.PROXY_FAILED if session.tunnelling else ErrorCode.CONNECTION_TIMEOUT
            return code, f"timed out after {timeout:g} s ({session.stage})"
        except HostNotFound as exc:
            return ErrorCode.DNS_NOT_FOUND, f"host not found: {exc}"
        except ssl.SSLCertVerificationError as exc:
            return ErrorCode.TLS_CERTIFICATE_INVALID, (
                f"TLS certificate rejected for {session.server_hostname}: "
                f"{exc.verify_message or exc.reason or exc}"
            )
        except ssl.SSLError as exc:
            return _tls_failure(protocol, exc)
        except ConnectionRefusedError:
            return ErrorCode.CONNECTION_REFUSED, (
                f"connection refused by {session.endpoint.host}:{session.endpoint.port}"
            )
        except (ConnectionClosed, ConnectionError) as exc:
            if session.succeeded:
                return None, ""
            return ErrorCode.CONNECTION_CLOSED, f"{_describe(exc)} ({session.stage})"
        except LineTooLong as exc:
            return ErrorCode.PROTOCOL_ERROR, f"{exc} ({session.stage})"
        except OSError as exc:  # unreachable network or host, and the like
            return ErrorCode.CONNECTION_REFUSED, (
                f"cannot connect to {session.endpoint.host}:{session.endpoint.port}: "
                f"{exc.strerror or _describe(exc)}"
            )
        except Exception as exc:  # noqa: BLE001 - a probe never raises; the verdict says what broke
            return _internal_error(protocol, session.endpoint, exc)


def _internal_error(
    protocol: MailProtocol, endpoint: Endpoint, exc: Exception
) -> tuple[ErrorCode, str]:
    # Only the type and the place: an exception's text can hold the password.
    frame = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f"{frame[0].filename}:{frame[0].lineno}" if frame else "?"
    log.error(
        "internal error probing %s %s:%s: %s at %s",
        protocol, getattr(endpoint, "host", "?"), getattr(endpoint, "port", "?"),
        type(exc).__name__, where,
    )
    return ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__})"


def _tls_failure(protocol: MailProtocol, exc: ssl.SSLError) -> tuple[ErrorCode, str]:
    reason = exc.reason.lower().replace("_", " ") if exc.reason else _describe(exc)
    message = f"TLS handshake failed: {reason}"
    if is_plaintext_reply(exc):
        message += " (the server answered in plaintext: the port may expect starttls or none)"
    verdict = classify(protocol, None, str(exc), ErrorCode.TLS_HANDSHAKE_FAILED)
    return verdict.code, message


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
