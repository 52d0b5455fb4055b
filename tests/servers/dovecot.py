"""A real Dovecot 2.3 for the tests: IMAP and submission, STARTTLS and implicit TLS.

Tests normally use `start_mail_server()` (bottom of this file): Dovecot where installed,
else the pymap fallback in tests/servers/pymap_imap.py (IMAP only).

`start_dovecot()` writes a self-contained configuration into a work directory (its own
base_dir, state_dir, log file, passwd-file and maildirs), starts `dovecot -F` on free
loopback ports and stops it again on exit. The system instance is never touched.

It runs as root (CI) and as a normal user:

* as root, login processes run as `dovenull` (Dovecot refuses root there) and mail
  processes as the `dovecot` user, chrooted into the maildir root. The chroot lets them
  reach their mail even when the work directory sits below a 0700 directory such as
  pytest's `/tmp/pytest-of-root`; the maildir root is handed to that user.
* as a normal user, every Dovecot process runs as that user and nothing is chrooted.

Besides passwords, Dovecot accepts OAuth2 (XOAUTH2, OAUTHBEARER) through an `oauth2` passdb
that asks a token introspection server (tests/servers/introspection.py), started before it;
`DovecotServer.tokens` mints and revokes the tokens it accepts.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.introspection import IntrospectionServer, introspection_server
from tests.servers.tls import TestPKI

DOVECOT_CANDIDATES = ("dovecot", "/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REQUIRE_DOVECOT_ENV = "MAILCONNECT_REQUIRE_DOVECOT"  # CI: no fallback to pymap
LISTENERS = ("imap", "imaps", "submission", "submissions")
CONCURRENCY = 1000  # processes/clients per service; ~200 concurrent logins need headroom


@dataclass(frozen=True)
class RelayedMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass(frozen=True, kw_only=True)
class DovecotServer:
    """Where a test mail server listens. Ports are None for what it doesn't serve."""

    host: str = "localhost"
    imap_port: int  # IMAP, STARTTLS offered (143-style)
    imaps_port: int  # IMAP over implicit TLS (993-style)
    submission_port: int | None  # SMTP submission, STARTTLS (587-style)
    submissions_port: int | None  # SMTP submission over implicit TLS (465-style)
    log_file: Path
    is_dovecot: bool = True
    # Mints and revokes the OAuth2 tokens Dovecot accepts (XOAUTH2, OAUTHBEARER); None where
    # the server has no OAuth2 (the pymap fallback).
    tokens: IntrospectionServer | None = field(default=None, compare=False, repr=False)
    # Mail that Dovecot's submission service relayed (to a sink in the test process).
    relayed: list[RelayedMessage] = field(default_factory=list, compare=False, repr=False)


class _RelaySink:
    """aiosmtpd handler: accepts whatever Dovecot relays and keeps it."""

    def __init__(self, messages: list[RelayedMessage]) -> None:
        self.messages = messages

    async def handle_DATA(self, server, session, envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        self.messages.append(RelayedMessage(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 2.0.0 OK: discarded by the mailconnect test relay"


@contextlib.contextmanager
def relay_sink(messages: list[RelayedMessage]) -> Iterator[int]:
    """A loopback SMTP server for Dovecot's submission_relay_host; yields its port.

    Dovecot's submission service connects to its relay right after a login and drops the
    client (421) if it can't, so a dead port would break QUIT/NOOP after AUTH.
    """
    from aiosmtpd.controller import Controller

    controller = Controller(
        _RelaySink(messages),
        hostname="127.0.0.1",
        port=free_ports(1)[0],
        ready_timeout=10,
        server_hostname="localhost",  # else aiosmtpd calls getfqdn() on every connection
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def dovecot_binary() -> str | None:
    for candidate in DOVECOT_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def dovecot_available() -> bool:
    return dovecot_binary() is not None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel hands out now; held together so they are distinct."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_ports(host: str, ports: list[int], deadline: float, alive=lambda: True) -> bool:
    pending = list(ports)
    while pending:
        if not alive() or time.monotonic() > deadline:
            return False
        port = pending[0]
        try:
            with socket.create_connection((host, port), timeout=1):
                pending.pop(0)
        except OSError:
            time.sleep(0.05)
    return True


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _user_or(names: tuple[str, ...]) -> pwd.struct_passwd:
    for name in names:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"none of the users {names} exists; install dovecot-core")


def write_passwd_file(path: Path, users: Mapping[str, str]) -> None:
    lines = []
    for user, password in users.items():
        if not user or "/" in user or user in (".", "..") or any(ch in user for ch in ":\n\r\t "):
            raise ValueError(f"user name {user!r} can't be a test mailbox")
        if any(ch in password for ch in ":\n\r\t") or password != password.strip():
            raise ValueError(f"password {password!r} can't go into a passwd-file")
        lines.append(f"{user}:{{PLAIN}}{password}::::::\n")
    path.write_text("".join(lines), encoding="utf-8")
    path.chmod(0o600)


def _make_homes(mail_root: Path, users: Mapping[str, str], owner: pwd.struct_passwd) -> None:
    """Home directories exist up front (Dovecot logs an error when it can't chdir)."""
    chown = os.geteuid() == 0
    for directory in (mail_root, *(mail_root / user for user in users)):
        directory.mkdir(exist_ok=True)
        if chown:
            os.chown(directory, owner.pw_uid, owner.pw_gid)


def _oauth2_passdb(workdir: Path, introspection_url: str | None) -> str:
    """A passdb that checks XOAUTH2/OAUTHBEARER tokens at the introspection server.

    It sits after the static `nodelay` passdb (which only sets fields) and before the password
    one, and only the OAuth mechanisms reach it. No auth cache is configured, so a revoked
    token is refused on the very next login.
    """
    if introspection_url is None:
        return ""
    args = workdir / "oauth2.conf"
    args.write_text(
        "introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        "force_introspection = yes\n"
        "username_attribute = email\n"
        "active_attribute = active\n"
        "active_value = true\n"
    )
    return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {args}
}}
"""


def _config(
    workdir: Path,
    pki: TestPKI,
    ports: dict[str, int],
    relay_port: int,
    users: Mapping[str, str],
    introspection_url: str | None = None,
) -> str:
    base_dir = workdir / "run"
    state_dir = workdir / "state"
    mail_root = workdir / "mail"
    for directory in (base_dir, state_dir, mail_root):
        directory.mkdir(parents=True, exist_ok=True)

    if os.geteuid() == 0:
        login_user = _user_or(("dovenull", "nobody"))
        mail_user = _user_or(("dovecot", "nobody"))
        internal_user = internal_group = "root"
        userdb_args = f"uid={mail_user.pw_uid} gid={mail_user.pw_gid} home=/%u chroot={mail_root}"
        chroot_lines = f"valid_chroot_dirs = {mail_root}\n"
        login_chroot = ""  # keep Dovecot's default chroot for login processes
        first_uid = first_gid = 1
    else:
        me = pwd.getpwuid(os.getuid())
        login_user = mail_user = me
        internal_user = me.pw_name
        internal_group = grp.getgrgid(me.pw_gid).gr_name
        userdb_args = f"uid={me.pw_uid} gid={me.pw_gid} home={mail_root}/%u"
        chroot_lines = ""
        login_chroot = "  chroot =\n"
        first_uid = me.pw_uid
        first_gid = me.pw_gid

    anvil_chroot = "" if os.geteuid() == 0 else "  chroot =\n"

    _make_homes(mail_root, users, mail_user)
    return f"""# Written by tests/servers/dovecot.py for one test run; not a production config.
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = mailconnect-test-{os.getpid()}
log_path = {workdir / "dovecot.log"}
info_log_path = {workdir / "dovecot.log"}
debug_log_path = {workdir / "dovecot.log"}
protocols = imap submission
listen = 127.0.0.1
hostname = localhost
login_greeting = mailconnect test Dovecot ready.

default_login_user = {login_user.pw_name}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {first_uid}
first_valid_gid = {first_gid}
{chroot_lines}
ssl = yes
ssl_cert = <{pki.good.cert_file}
ssl_key = <{pki.good.key_file}
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login{" xoauth2 oauthbearer" if introspection_url else ""}
auth_username_format = %u
auth_failure_delay = 0
auth_verbose = yes
# Dovecot 2.3.19 still queues failures for up to 0.5 s with auth_failure_delay = 0;
# a "nodelay" extra field skips that queue. A failing passdb rolls back its own extra
# fields, so it comes from a passdb that only sets fields (noauthenticate).
passdb {{
  driver = static
  args = noauthenticate nodelay=yes
}}
{_oauth2_passdb(workdir, introspection_url)}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {workdir / "users.passwd"}
}}
userdb {{
  driver = static
  args = {userdb_args}
}}
mail_location = maildir:~/Maildir
mail_max_userip_connections = {CONCURRENCY}
protocol imap {{
  mail_max_userip_connections = {CONCURRENCY}
}}

default_process_limit = {CONCURRENCY}
default_client_limit = {CONCURRENCY * 4}
default_vsz_limit = 512M

service imap-login {{
{login_chroot}  service_count = 0
  process_min_avail = 2
  inet_listener imap {{
    address = 127.0.0.1
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ports["imaps"]}
    ssl = yes
  }}
}}
service submission-login {{
{login_chroot}  service_count = 0
  process_min_avail = 2
  inet_listener submission {{
    address = 127.0.0.1
    port = {ports["submission"]}
  }}
  inet_listener submissions {{
    address = 127.0.0.1
    port = {ports["submissions"]}
    ssl = yes
  }}
}}
service imap {{
  process_limit = {CONCURRENCY}
}}
service submission {{
  process_limit = {CONCURRENCY}
}}
service auth {{
  client_limit = {CONCURRENCY * 8}
}}
service anvil {{
{anvil_chroot}  # No auth penalty: after a failed login anvil would delay every later login
  # from the same IP (2 s, 4 s, ... up to 15 s); all test clients share 127.0.0.1.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
# The relay is a sink in the test process: it accepts and keeps what it gets.
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
submission_relay_connect_timeout = 2 secs
"""


def _raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONCURRENCY * 16
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Signal the server's whole process group (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a server started with start_new_session=True, children included.

    SIGTERM to the whole group, not just Dovecot's master: the master alone takes 1-6 s
    to shut its children down; all of them at once take ~0.1 s.
    """
    if process.poll() is None:  # not reaped yet, so its pid can't name anyone else's group
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def _launch(
    binary: str,
    workdir: Path,
    pki: TestPKI,
    relay_port: int,
    users: Mapping[str, str],
    introspection_url: str | None,
):
    """Start the master on fresh ports; returns (process, ports) or raises with the log."""
    log_file = workdir / "dovecot.log"
    stderr_file = workdir / "dovecot.stderr"
    config_file = workdir / "dovecot.conf"
    error = ""
    for _attempt in range(3):  # a picked port may be taken before Dovecot binds it
        ports = dict(zip(LISTENERS, free_ports(len(LISTENERS)), strict=True))
        config_file.write_text(
            _config(workdir, pki, ports, relay_port, users, introspection_url)
        )
        log_file.write_text("")
        with open(stderr_file, "wb") as stderr:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(config_file)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=_raise_nofile_limit,
                start_new_session=True,
            )
        up = wait_for_ports(
            "127.0.0.1",
            list(ports.values()),
            time.monotonic() + START_TIMEOUT,
            alive=lambda p=process: p.poll() is None,
        )
        if up:
            return process, ports
        stop_process_group(process)
        error = (
            f"dovecot did not come up (exit code {process.returncode}); "
            f"config {config_file}\n--- {log_file} ---\n{log_tail(log_file)}\n"
            f"--- output ---\n{log_tail(stderr_file)}"
        )
        if "in use" not in error:
            break
    raise RuntimeError(error)


@contextlib.contextmanager
def start_dovecot(workdir: Path, pki: TestPKI, users: Mapping[str, str]) -> Iterator[DovecotServer]:
    """Run Dovecot for the block; yields where it listens. Raises with its log if it fails."""
    binary = dovecot_binary()
    if binary is None:
        raise RuntimeError("dovecot is not installed (Debian: dovecot-imapd dovecot-submissiond)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    write_passwd_file(workdir / "users.passwd", users)
    relayed: list[RelayedMessage] = []
    # The introspection server first: Dovecot's config names its URL.
    with introspection_server() as tokens, relay_sink(relayed) as relay_port:
        process, ports = _launch(binary, workdir, pki, relay_port, users, tokens.url)
        try:
            yield DovecotServer(
                imap_port=ports["imap"],
                imaps_port=ports["imaps"],
                submission_port=ports["submission"],
                submissions_port=ports["submissions"],
                log_file=workdir / "dovecot.log",
                relayed=relayed,
                tokens=tokens,
            )
        finally:
            stop_process_group(process)


@contextlib.contextmanager
def start_mail_server(
    workdir: Path, pki: TestPKI, users: Mapping[str, str]
) -> Iterator[DovecotServer]:
    """The server tests should use: Dovecot where installed; else pymap (IMAP only,
    `is_dovecot=False`, submission ports None), unless MAILCONNECT_REQUIRE_DOVECOT=1."""
    if dovecot_available():
        with start_dovecot(workdir, pki, users) as server:
            yield server
        return
    if os.environ.get(REQUIRE_DOVECOT_ENV, "") not in ("", "0"):
        raise RuntimeError(
            f"{REQUIRE_DOVECOT_ENV} is set but dovecot is not installed "
            "(Debian: apt-get install dovecot-imapd dovecot-submissiond)"
        )
    from tests.servers.pymap_imap import pymap_available, start_pymap

    if not pymap_available():
        raise RuntimeError(
            "neither dovecot (Debian: dovecot-imapd dovecot-submissiond) nor pymap "
            "(pip install 'pymap>=0.36') is installed"
        )
    with start_pymap(workdir, pki, users) as server:
        yield server
