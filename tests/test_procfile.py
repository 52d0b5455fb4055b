"""The Procfile's entries run as written from the repo root, with only environment variables."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from app.devserver import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        entries[name.strip()] = command.strip()
    return entries


def test_procfile_has_the_four_processes():
    assert set(procfile()) == {"release", "web", "worker", "beat"}


def test_release_then_web_serve_health(env):
    run_env = {**os.environ, **env, "PORT": str(free_port())}
    subprocess.run(["bash", "-c", procfile()["release"]], cwd=ROOT, env=run_env, check=True,
                   capture_output=True)
    web = subprocess.Popen(["bash", "-c", f"exec {procfile()['web']}"], cwd=ROOT, env=run_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{run_env['PORT']}/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert web.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not listen on $PORT"
                time.sleep(0.2)
        assert response.status_code == 200
    finally:
        web.terminate()
        web.wait(timeout=20)
