"""Every kustomization renders, and every object in it validates against a published schema."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import jsonschema
import pytest
from kubernetes_validate import ValidationError

from tests.deploy.manifests import KUBERNETES_VERSIONS, KUSTOMIZATIONS, Doc, one
from tests.deploy.schemas import CUSTOM, validate_core, validate_custom, validate_inference_service


def validate(doc: Doc, version: str) -> None:
    if (doc["apiVersion"], doc["kind"]) in CUSTOM:
        validate_custom(doc)
    elif doc["kind"] == "InferenceService":
        validate_inference_service(doc, version)
    else:
        validate_core(doc, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_validates(rendered: dict[str, list[Doc]], kustomization: str, version: str) -> None:
    docs = rendered[kustomization]
    assert docs, f"{kustomization} rendered nothing"
    for doc in docs:
        try:
            validate(doc, version)
        except (ValidationError, jsonschema.ValidationError) as exc:
            path = ".".join(str(part) for part in exc.absolute_path)
            pytest.fail(f"{kustomization}: {doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")


SHARED_KINDS = {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Job", "PodDisruptionBudget"}
MONITORING_KINDS = {"ScaledObject", "PodMonitor", "PrometheusRule"}


def test_the_overlays_hold_what_the_docs_promise(rendered: dict[str, list[Doc]]) -> None:
    plain = SHARED_KINDS | MONITORING_KINDS | {"Deployment", "Service"}
    expected = {"overlays/gpu": plain, "overlays/cpu": plain, "overlays/kserve": plain - {"Deployment", "Service"}}
    expected["overlays/kserve"] = expected["overlays/kserve"] | {"InferenceService"}
    for overlay, kinds in expected.items():
        assert {doc["kind"] for doc in rendered[overlay]} == kinds, overlay
        namespaces = {doc["metadata"].get("namespace") for doc in rendered[overlay] if doc["kind"] != "Namespace"}
        assert namespaces == {"resnet50"}, f"{overlay}: every object belongs in the resnet50 namespace"


class Breakage(NamedTuple):
    overlay: str
    kind: str
    path: tuple[str | int, ...]
    key: str
    value: Any


# The validation must be able to fail: a misspelt field, a wrong type, a bad pattern.
BREAKAGES = {
    "a misspelt Deployment field": Breakage(
        "overlays/gpu", "Deployment", ("spec", "template", "spec"), "terminationGrace", 60
    ),
    "a probe port of the wrong type": Breakage(
        "overlays/gpu",
        "Deployment",
        ("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet"),
        "port",
        8000.5,
    ),
    "an unknown PodMonitor endpoint field": Breakage(
        "overlays/gpu", "PodMonitor", ("spec", "podMetricsEndpoints", 0), "paht", "/metrics"
    ),
    "an unknown ScaledObject field": Breakage("overlays/gpu", "ScaledObject", ("spec",), "maxReplicas", 3),
    "a PrometheusRule duration that is not one": Breakage(
        "overlays/gpu", "PrometheusRule", ("spec", "groups", 0, "rules", 0), "for", "ten minutes"
    ),
    "a misspelt predictor field": Breakage(
        "overlays/kserve", "InferenceService", ("spec", "predictor"), "tolerations_", []
    ),
    "a misspelt container field in the predictor": Breakage(
        "overlays/kserve", "InferenceService", ("spec", "predictor", "containers", 0), "readinesProbe", {}
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_object_fails_validation(rendered: dict[str, list[Doc]], breakage: str) -> None:
    case = BREAKAGES[breakage]
    doc = copy.deepcopy(one(rendered[case.overlay], case.kind))
    target: Any = doc
    for part in case.path:
        target = target[part]
    target[case.key] = case.value
    with pytest.raises((ValidationError, jsonschema.ValidationError)):
        validate(doc, KUBERNETES_VERSIONS[-1])
