"""The pods: security constraints, references that resolve, a grace period that covers the drain, and the
KServe predictor identical to the plain Deployment's pod."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import (
    KUSTOMIZATIONS,
    OVERLAYS,
    Doc,
    all_containers,
    api_pod,
    config_env,
    find,
    one,
    pod_templates,
)

# Claims the project does not create: the training data is the user's (docs/kubernetes.md, "Training").
USER_CLAIMS = {"resnet50-data"}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_pod_runs_under_the_restricted_constraints(rendered: dict[str, list[Doc]], kustomization: str) -> None:
    pods = list(pod_templates(rendered[kustomization]))
    assert pods, kustomization
    for pod in pods:
        context = pod.spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001, pod.owner
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, pod.owner
        assert pod.spec["automountServiceAccountToken"] is False, pod.owner
        assert pod.spec["enableServiceLinks"] is False, f"{pod.owner}: service links would inject SERVE_* variables"
        for container in all_containers(pod.spec):
            where = f"{pod.owner}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert "memory" in container["resources"]["limits"], f"{where}: no memory limit"
            assert container["resources"]["requests"], f"{where}: no requests"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_reference_resolves(rendered: dict[str, list[Doc]], kustomization: str) -> None:
    docs = rendered[kustomization]
    claims = {doc["metadata"]["name"] for doc in find(docs, "PersistentVolumeClaim")}
    for pod in pod_templates(docs):
        volumes = {volume["name"]: volume for volume in pod.spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                # The training kustomizations use the weights claim the serving overlays create.
                assert claim in claims | USER_CLAIMS | {"resnet50-weights"}, f"{pod.owner}: claim {claim}"
        for container in all_containers(pod.spec):
            config_env(docs, container)  # every envFrom ConfigMap exists (one() raises otherwise)
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{pod.owner}/{container['name']}: no volume {mount['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_pause_and_the_drain(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    spec = api_pod(docs).spec
    container = spec["containers"][0]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    timeout = float(config_env(docs, container)["SERVE_REQUEST_TIMEOUT_S"])
    # The drain finishes every admitted request within the request timeout; a few seconds more let the
    # processes exit before the kubelet's SIGKILL.
    assert spec["terminationGracePeriodSeconds"] >= pause + timeout + 10, overlay
    assert pause >= 5, "endpoints need a few seconds to drop a terminating pod"


def test_the_kserve_predictor_is_the_deployments_pod(rendered: dict[str, list[Doc]]) -> None:
    deployment = one(rendered["overlays/gpu"], "Deployment", "resnet50-api")["spec"]["template"]["spec"]
    predictor = dict(one(rendered["overlays/kserve"], "InferenceService")["spec"]["predictor"])
    for key in ("minReplicas", "maxReplicas", "labels", "deploymentStrategy"):
        predictor.pop(key)
    deployment_container = dict(deployment["containers"][0])
    predictor_container = dict(predictor["containers"][0])
    assert predictor_container.pop("name") == "kserve-container" and deployment_container.pop("name") == "api"
    # KServe serves one port; gRPC is left to the plain Deployment (docs/kubernetes.md, "KServe").
    deployment_container["ports"] = [port for port in deployment_container["ports"] if port["name"] == "http"]
    assert predictor_container == deployment_container
    assert {**predictor, "containers": []} == {**deployment, "containers": []}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ports_are_the_ones_the_service_listens_on(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    container = api_pod(docs).spec["containers"][0]
    env = config_env(docs, container)
    settings = {"http": "SERVE_PORT", "grpc": "SERVE_GRPC_PORT"}
    for port in container["ports"]:
        assert port["containerPort"] == int(env[settings[port["name"]]]), f"{overlay}: port {port['name']}"
    for service in find(docs, "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in settings, f"{overlay}: Service port {port['name']} targets no named port"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admin_key_comes_from_an_optional_secret_never_a_value(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    container = api_pod(docs).spec["containers"][0]
    assert "SERVE_ADMIN_KEY" not in config_env(docs, container), f"{overlay}: a key in plain configuration"
    (entry,) = [item for item in container.get("env", []) if item["name"] == "SERVE_ADMIN_KEY"]
    reference = entry["valueFrom"]["secretKeyRef"]
    # Optional: without the Secret the pod still starts, and every admin call over HTTP answers 403.
    assert reference == {"name": "resnet50-admin", "key": "admin-key", "optional": True}, overlay
