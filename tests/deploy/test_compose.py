"""deploy/docker-compose.yml against the Compose Specification's schema (vendored in
check-jsonschema, so no network), and against what the stack must guarantee."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.manifests import DEPLOY, compose, procfile

APP = ("release", "web", "worker", "beat")
ONE_SHOTS = ("createbucket", "release")


def test_valid_under_the_compose_spec_schema():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "docker-compose.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_services():
    assert set(compose()["services"]) == {"postgres", "redis", "minio", *ONE_SHOTS, *APP[1:]}


def test_app_processes_run_the_procfiles_commands():
    services = compose()["services"]
    for name in APP:
        command = services[name]["command"]
        assert command[:2] == ["sh", "-c"], name
        # `$$` is compose's escape for a `$` the container's shell expands.
        assert command[2] == f"exec {procfile()[name].replace('$', '$$')}", name


def test_app_processes_start_after_migrations_and_the_bucket():
    services = compose()["services"]
    for name in APP[1:]:
        depends = services[name]["depends_on"]
        for one_shot in ONE_SHOTS:
            assert depends[one_shot] == {"condition": "service_completed_successfully"}, name
        for store in ("postgres", "redis"):
            assert depends[store] == {"condition": "service_healthy"}, name
    assert services["release"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["createbucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    for one_shot in ONE_SHOTS:
        assert services[one_shot]["restart"] == "no"


def test_the_bucket_created_is_the_configured_one():
    env = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    script = compose()["services"]["createbucket"]["entrypoint"][-1]
    assert f"store/{env['S3_BUCKET']}" in script


def test_redis_keeps_queued_tasks():
    command = compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"


def test_long_running_services_have_healthchecks():
    services = compose()["services"]
    for name in ("postgres", "redis", "minio", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
