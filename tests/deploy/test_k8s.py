"""deploy/k8s: every object against Kubernetes' schemas (kubernetes-validate ships them, so no
network), the KEDA objects against tests/deploy/keda_schema.py, and what the manifests must
agree on with the code: commands, queue names, probes, secrets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import redis

from app.config import load_settings
from tests.deploy.keda_schema import SCHEMAS
from tests.deploy.manifests import dockerfile_stages, k8s_object, k8s_objects, procfile
from workers.factory import PROBE_QUEUE, RUN_ROWS, make_celery

KUBERNETES_VERSION = "1.30.0"
KEDA_KINDS = set(SCHEMAS)


def containers(name: str) -> list[dict[str, Any]]:
    return k8s_object("Deployment", name)["spec"]["template"]["spec"]["containers"]


def scaled_object() -> dict[str, Any]:
    return k8s_object("ScaledObject", "mailconnect-worker")


def redis_trigger() -> dict[str, Any]:
    (trigger,) = scaled_object()["spec"]["triggers"]
    assert trigger["type"] == "redis"
    return trigger


@pytest.mark.parametrize(("source", "manifest"), [
    pytest.param(source, manifest, id=f"{source}:{manifest['kind']}/{manifest['metadata']['name']}")
    for source, manifest in k8s_objects()
])
def test_valid_against_its_schema(source, manifest):
    if manifest["kind"] in KEDA_KINDS:
        jsonschema.validate(manifest, SCHEMAS[manifest["kind"]])
    else:
        # strict: fields the schema does not know are errors, so a misspelt one fails.
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schemas_refuse_a_misspelt_field():
    deployment = k8s_object("Deployment", "mailconnect-web")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    trigger = redis_trigger()
    broken_trigger = {**trigger, "metadata": {**trigger["metadata"], "listname": "x"}}
    spec = {**scaled_object()["spec"], "triggers": [broken_trigger]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scaled_object(), "spec": spec}, SCHEMAS["ScaledObject"])


def test_the_scaling_behaviour_is_a_valid_hpa_behaviour():
    behavior = scaled_object()["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "check"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": "mailconnect-worker"},
                    "maxReplicas": 2, "behavior": behavior}}
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


def test_processes_run_the_procfiles_commands():
    (beat,) = containers("mailconnect-beat")
    assert " ".join(beat["command"]) == procfile()["beat"]
    (worker,) = containers("mailconnect-worker")
    # The worker has its pod to itself: no `nice` needed to keep polls quick beside it.
    assert procfile()["worker"].endswith(" ".join(worker["command"]))
    job = k8s_object("Job", "mailconnect-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert " ".join(migrate["command"]) == procfile()["release"]
    (web,) = containers("mailconnect-web")
    assert "command" not in web and "args" not in web  # the image's CMD: the Procfile's web
    assert procfile()["web"] in dockerfile_stages()[-1].all("CMD")[-1]


def test_web_probes_and_service():
    (web,) = containers("mailconnect-web")
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = web["ports"][0]
    assert {"name": "PORT", "value": str(port["containerPort"])} in web["env"]
    service = k8s_object("Service", "mailconnect-web")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    template_labels = k8s_object("Deployment", "mailconnect-web")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= template_labels["labels"].items()


def test_exactly_one_beat():
    beat = k8s_object("Deployment", "mailconnect-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_every_pod_is_non_root_with_resources_and_a_writable_data_dir():
    # The image's data directory (beat's schedule lives there) must be writable.
    image_env = " ".join(dockerfile_stages()[-1].all("ENV"))
    data_dir = next(w.split("=", 1)[1] for w in image_env.split() if
                    w.startswith("MAILCONNECT_DATA_DIR="))
    for _source, manifest in k8s_objects():
        if manifest["kind"] not in {"Deployment", "Job"}:
            continue
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        mounts = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            writable = {m["mountPath"] for m in container["volumeMounts"]
                        if "emptyDir" in mounts[m["name"]]}
            assert {data_dir, "/tmp"} <= writable, manifest["metadata"]["name"]


def test_every_reference_resolves():
    names = {(o["kind"], o["metadata"]["name"]): o for _, o in k8s_objects()}
    for _source, manifest in k8s_objects():
        if manifest["kind"] not in {"Deployment", "Job"}:
            continue
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            for source in container["envFrom"]:
                kind, ref = next(iter(source.items()))
                kind = {"configMapRef": "ConfigMap", "secretRef": "Secret"}[kind]
                assert (kind, ref["name"]) in names
    target = scaled_object()["spec"]["scaleTargetRef"]["name"]
    assert ("Deployment", target) in names
    auth = names[("TriggerAuthentication", redis_trigger()["authenticationRef"]["name"])]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in names[("Secret", ref["name"])]["stringData"]


def test_secrets_example_carries_the_encryption_key():
    # Without CREDENTIALS_KEYS each pod would generate its own key in its emptyDir.
    assert "CREDENTIALS_KEYS" in k8s_object("Secret", "mailconnect-secrets")["stringData"]


def test_keda_scales_on_the_probe_queue_of_the_configured_database():
    trigger = redis_trigger()
    assert trigger["metadata"]["listName"] == PROBE_QUEUE
    redis_url = k8s_object("Secret", "mailconnect-secrets")["stringData"]["REDIS_URL"]
    assert trigger["metadata"]["databaseIndex"] == (urlsplit(redis_url).path.strip("/") or "0")
    spec = scaled_object()["spec"]
    # The control queue is not counted: at least one worker always serves it.
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


@pytest.mark.integration
def test_probe_messages_wait_in_the_list_keda_reads(redis_url, tmp_path):
    # A database of its own on the test Redis, so no running test worker takes the message.
    url = urlsplit(redis_url)._replace(path="/15").geturl()
    client = redis.Redis.from_url(url)
    client.flushdb()
    celery = make_celery(load_settings(REDIS_URL=url, MAILCONNECT_DATA_DIR=tmp_path))
    try:
        list_name = redis_trigger()["metadata"]["listName"]
        assert client.llen(list_name) == 0
        celery.send_task(RUN_ROWS, args=[0])
        assert client.llen(list_name) == 1
    finally:
        celery.close()
        client.flushdb()
        client.close()
