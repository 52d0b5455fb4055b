"""JSON Schemas for the KEDA objects deploy/k8s uses (keda.sh/v1alpha1 ScaledObject and
TriggerAuthentication), written from KEDA's documentation: Kubernetes' own schemas do not know
these custom resources. Only the fields KEDA documents are allowed, so a misspelt one fails."""

from __future__ import annotations

from typing import Any

STRING = {"type": "string"}
COUNT = {"type": "string", "pattern": "^[0-9]+$"}  # KEDA's metadata values are strings


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


METADATA = {"type": "object", "required": ["name"],
            "properties": {"name": STRING, "namespace": STRING, "labels": {"type": "object"},
                           "annotations": {"type": "object"}}}

# The Redis Lists scaler's trigger metadata (`type: redis`).
REDIS_LIST_METADATA = _object(
    {
        "address": STRING, "host": STRING, "port": COUNT,
        "addressFromEnv": STRING, "hostFromEnv": STRING, "portFromEnv": STRING,
        "usernameFromEnv": STRING, "passwordFromEnv": STRING,
        "listName": STRING, "listLength": COUNT, "activationListLength": COUNT,
        "enableTLS": {"enum": ["true", "false"]}, "unsafeSsl": {"enum": ["true", "false"]},
        "databaseIndex": COUNT,
    },
    required=("listName",),
)

TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": STRING,
        "name": STRING,
        "metadata": {"type": "object", "additionalProperties": STRING},
        "authenticationRef": _object(
            {"name": STRING,
             "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}},
            required=("name",)),
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
    },
    "if": {"properties": {"type": {"const": "redis"}}},
    "then": {"properties": {"metadata": REDIS_LIST_METADATA}},
}

SCALED_OBJECT = _object(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA,
        "spec": _object(
            {
                "scaleTargetRef": _object(
                    {"name": STRING, "kind": STRING, "apiVersion": STRING,
                     "envSourceContainerName": STRING},
                    required=("name",)),
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": _object({"failureThreshold": {"type": "integer"},
                                     "replicas": {"type": "integer"}},
                                    required=("failureThreshold", "replicas")),
                "advanced": _object({
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    # Checked against Kubernetes' HorizontalPodAutoscalerBehavior in the test.
                    "horizontalPodAutoscalerConfig": _object(
                        {"name": STRING, "behavior": {"type": "object"}}),
                    "scalingModifiers": {"type": "object"},
                }),
                "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
            },
            required=("scaleTargetRef", "triggers"),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

# Parameters the Redis scaler takes from a TriggerAuthentication.
REDIS_AUTH_PARAMETERS = ["address", "host", "port", "username", "password", "tls", "ca",
                         "cert", "key", "addresses", "hosts", "ports"]

TRIGGER_AUTHENTICATION = _object(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": METADATA,
        "spec": _object({
            "secretTargetRef": {"type": "array", "items": _object(
                {"parameter": {"enum": REDIS_AUTH_PARAMETERS}, "name": STRING, "key": STRING},
                required=("parameter", "name", "key"))},
            "env": {"type": "array", "items": _object(
                {"parameter": {"enum": REDIS_AUTH_PARAMETERS}, "name": STRING,
                 "containerName": STRING},
                required=("parameter", "name"))},
        }),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}
