"""Fallback IMAP server for machines without Dovecot: pymap (PyPI), in a subprocess.

pymap serves IMAP only, so the returned `DovecotServer` has `is_dovecot=False` and no
submission ports. Two listeners share one maildir backend: the IMAP port offers STARTTLS
and the IMAPS port speaks TLS from the first byte. Users come from pymap's own
passwd/shadow files in the work directory, with cleartext passwords.

Tests should call `start_mail_server()` (in tests.servers.dovecot, re-exported here):
Dovecot where it is installed, else pymap, unless MAILCONNECT_REQUIRE_DOVECOT=1 (CI).

Run by `start_pymap()` as `python -m tests.servers.pymap_imap WORKDIR` (reads
WORKDIR/pymap.json); nothing else should need that entry point.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.servers.dovecot import (
    REQUIRE_DOVECOT_ENV,
    DovecotServer,
    free_ports,
    log_tail,
    start_mail_server,
    stop_process_group,
    wait_for_ports,
)
from tests.servers.tls import TestPKI

REPO_ROOT = Path(__file__).resolve().parents[2]
__all__ = ["REQUIRE_DOVECOT_ENV", "pymap_available", "start_mail_server", "start_pymap"]
START_TIMEOUT = 30.0


def pymap_available() -> bool:
    return importlib.util.find_spec("pymap") is not None


def _check_user(user: str, password: str) -> None:
    if not user or "/" in user or user in (".", "..") or any(c in user for c in ":\r\n\t "):
        raise ValueError(f"user name {user!r} can't be a test mailbox")
    # ':' separates fields and a trailing '\\' would escape the next one; pymap treats
    # empty passwords and ones starting with '*' or '!' as disabled accounts.
    if any(c in password for c in ":\r\n") or password.endswith("\\") or password[:1] in "*!":
        raise ValueError(f"password {password!r} can't go into pymap's shadow file")


def _write_users(base_dir: Path, users: Mapping[str, str]) -> None:
    """pymap's maildir backend reads pymap-etc-passwd and pymap-etc-shadow from its base."""
    passwd, shadow = [], []
    for user, password in users.items():
        _check_user(user, password)
        # passwd: name:password:uid:gid:comment:home_dir:shell (uid "0" would mean admin)
        passwd.append(f"{user}:x::::{user}:\r\n")
        # shadow: name:password and seven empty fields
        shadow.append(f"{user}:{password}:::::::\r\n")
    base_dir.mkdir(parents=True, exist_ok=True)
    (base_dir / "pymap-etc-passwd").write_text("".join(passwd), encoding="utf-8")
    (base_dir / "pymap-etc-shadow").write_text("".join(shadow), encoding="utf-8")
    (base_dir / "pymap-etc-shadow").chmod(0o600)


@contextlib.contextmanager
def start_pymap(workdir: Path, pki: TestPKI, users: Mapping[str, str]) -> Iterator[DovecotServer]:
    """Run pymap for the block (IMAP+STARTTLS and IMAPS on loopback)."""
    if not pymap_available():
        raise RuntimeError("pymap is not installed (pip install 'pymap>=0.36')")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _write_users(workdir / "mail", users)
    log_file = workdir / "pymap.log"
    error = ""
    for _attempt in range(3):  # a picked port may be taken before pymap binds it
        imap_port, imaps_port = free_ports(2)
        (workdir / "pymap.json").write_text(
            json.dumps(
                {
                    "base_dir": str(workdir / "mail"),
                    "cert_file": str(pki.good.cert_file),
                    "key_file": str(pki.good.key_file),
                    "imap_port": imap_port,
                    "imaps_port": imaps_port,
                    "log_file": str(log_file),
                }
            )
        )
        log_file.write_text("")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))
            ),
        }
        with open(workdir / "pymap.out", "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.servers.pymap_imap", str(workdir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        up = wait_for_ports(
            "127.0.0.1",
            [imap_port, imaps_port],
            time.monotonic() + START_TIMEOUT,
            alive=lambda p=process: p.poll() is None,
        )
        if up:
            break
        stop_process_group(process)
        error = (
            f"pymap did not come up (exit code {process.returncode})\n"
            f"--- {log_file} ---\n{log_tail(log_file)}\n"
            f"--- output ---\n{log_tail(workdir / 'pymap.out')}"
        )
        if "in use" not in error:
            raise RuntimeError(error)
    else:
        raise RuntimeError(error)
    try:
        yield DovecotServer(
            imap_port=imap_port,
            imaps_port=imaps_port,
            submission_port=None,
            submissions_port=None,
            log_file=log_file,
            is_dovecot=False,
        )
    finally:
        stop_process_group(process)


# --- the subprocess -------------------------------------------------------------------


async def _serve(settings: dict) -> None:  # pragma: no cover - runs in the subprocess
    import asyncio
    import hmac
    from argparse import Namespace
    from contextlib import AsyncExitStack

    from proxyprotocol.reader import ProxyProtocolReader
    from pymap.backend.maildir import Config, Login
    from pymap.imap import IMAPServer
    from pysasl.hashing import Cleartext

    class Utf8Cleartext(Cleartext):
        """pysasl's Cleartext.verify raises TypeError on non-ASCII passwords."""

        __slots__ = ()

        def verify(self, secret: str, hash: str) -> bool:
            return hmac.compare_digest(secret.encode(), hash.encode())

    args = Namespace(
        base_dir=settings["base_dir"],
        concurrency=None,
        layout="++",
        colon=None,
        host="127.0.0.1",
        port=settings["imap_port"],
        debug=False,
        cert=settings["cert_file"],
        key=settings["key_file"],
        tls=True,
        passlib_cfg=None,
        proxy_protocol=None,
        inherited_sockets=None,
    )
    overrides = {
        "hash_context": Utf8Cleartext(),
        "invalid_user_sleep": 0.0,
        "reject_dnsbl": False,
        "bad_command_limit": None,
    }
    # What `pymap maildir` does, by hand: two listeners, one user database.
    starttls_config = Config.from_args(args, **overrides)
    # On the implicit-TLS port the session is encrypted already: no STARTTLS offered.
    implicit_config = Config.from_args(Namespace(**{**vars(args), "tls": False}), **overrides)
    starttls_config.apply_context()
    login = Login(starttls_config)

    async with AsyncExitStack() as stack:
        for config, port, ssl in (
            (starttls_config, settings["imap_port"], None),
            (implicit_config, settings["imaps_port"], starttls_config.ssl_context),
        ):
            callback = ProxyProtocolReader(config.proxy_protocol).get_callback(
                IMAPServer(login, config)
            )
            server = await asyncio.start_server(callback, host="127.0.0.1", port=port, ssl=ssl)
            await stack.enter_async_context(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()


def main(argv: list[str]) -> int:  # pragma: no cover - runs in the subprocess
    import asyncio
    import logging

    workdir = Path(argv[0])
    settings = json.loads((workdir / "pymap.json").read_text())
    logging.basicConfig(
        filename=settings["log_file"],
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    os.environ.setdefault("FQDN", "localhost")  # pymap's greeting calls getfqdn() otherwise
    asyncio.run(_serve(settings))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
