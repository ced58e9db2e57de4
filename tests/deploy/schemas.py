"""Validate rendered objects against published schemas, offline.

Core Kubernetes objects: the OpenAPI schemas of stated Kubernetes releases that PyPI's
``kubernetes-validate`` ships, in their strict form (an unknown field is an error, as with
``kubectl apply``'s strict field validation). Custom resources: their CRDs' openAPIV3Schema, vendored
in ``schemas/`` with the source and release named at the top of each file, made strict the same way.
KServe's InferenceService CRD is a megabyte of PodSpec copies: its predictor is checked as the core
PodSpec it embeds, plus the few KServe fields these manifests use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from tests.deploy.manifests import Doc

SCHEMAS = Path(__file__).resolve().parent / "schemas"
CUSTOM = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-v1.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-v1alpha1.yaml",
}
# The InferenceService fields outside the embedded PodSpec that these manifests may use.
KSERVE_PREDICTOR_FIELDS = {"minReplicas", "maxReplicas", "labels", "annotations", "deploymentStrategy"}
KSERVE_ANNOTATIONS = {"serving.kserve.io/deploymentMode": {"RawDeployment", "Standard"}}


def strict(schema: Any) -> Any:
    """``additionalProperties: false`` on every object schema that lists its properties and does not keep
    unknown fields: what the API server's strict field validation does with a CRD's structural schema."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema and "additionalProperties" not in schema and not keeps_unknown:
        schema["additionalProperties"] = False
    return schema


def validate_core(doc: Doc, version: str) -> None:
    """A built-in kind against Kubernetes ``version``'s strict OpenAPI schema."""
    kubernetes_validate.validate(doc, version, strict=True)


def validate_custom(doc: Doc) -> None:
    """A custom resource against its vendored CRD schema."""
    name = CUSTOM[(doc["apiVersion"], doc["kind"])]
    schema = strict(yaml.safe_load((SCHEMAS / name).read_text()))
    jsonschema.Draft202012Validator(schema).validate(doc)


def validate_definition(value: Any, definition: str, version: str) -> None:
    """``value`` against one core definition, e.g. ``podspec-v1`` or ``deploymentstrategy-apps-v1``."""
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = schema_contents(f"{folder}/{definition}.json", version)
    definitions = Resource.from_contents(schema_contents(f"{folder}/_definitions.json", version))
    registry = definitions @ (Resource.from_contents(schema) @ Registry())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(value)


def validate_inference_service(doc: Doc, version: str) -> None:
    """The predictor as the PodSpec it embeds, its KServe fields, and the fields KServe requires."""
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1", doc["apiVersion"]
    assert doc["metadata"]["name"], "an InferenceService needs a name"
    for annotation, allowed in KSERVE_ANNOTATIONS.items():
        value = doc["metadata"].get("annotations", {}).get(annotation)
        assert value in allowed, f"{annotation}: {value!r} is not one of {sorted(allowed)}"
    assert set(doc["spec"]) == {"predictor"}, f"unexpected InferenceService spec fields {sorted(doc['spec'])}"
    predictor = dict(doc["spec"]["predictor"])
    names = [container["name"] for container in predictor.get("containers", [])]
    assert "kserve-container" in names, f"a custom predictor's container must be named kserve-container: {names}"
    extension = {key: predictor.pop(key) for key in KSERVE_PREDICTOR_FIELDS & set(predictor)}
    validate_definition(predictor, "podspec-v1", version)
    if "deploymentStrategy" in extension:
        validate_definition(extension["deploymentStrategy"], "deploymentstrategy-apps-v1", version)
    for key in ("minReplicas", "maxReplicas"):
        assert isinstance(extension.get(key, 1), int) and extension.get(key, 1) >= 0, f"{key}: {extension[key]!r}"
    for key in ("labels", "annotations"):
        assert all(isinstance(v, str) for v in extension.get(key, {}).values()), f"{key} must map to strings"
