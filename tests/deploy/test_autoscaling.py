"""The autoscaler: per-pod target on the right Deployment and namespace, and a scale-down that never takes
pods away faster than they drain."""

from __future__ import annotations

import re

import pytest

from tests.deploy.manifests import OVERLAYS, Doc, api_pod, one


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaled_object_drives_the_api(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    scaled = one(docs, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    if overlay == "overlays/kserve":
        # KServe names the Deployment it creates <InferenceService>-predictor.
        expected = one(docs, "InferenceService")["metadata"]["name"] + "-predictor"
    else:
        expected = one(docs, "Deployment")["metadata"]["name"]
    assert (target["kind"], target["name"]) == ("Deployment", expected)
    spec = scaled["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], "never to zero: a cold start takes minutes"
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue", "the threshold is per pod"
    metadata = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= metadata.keys()
    assert float(metadata["threshold"]) > 0
    # PromQL knows nothing of kustomize's namespace: the query must name the namespace the objects land in.
    namespaces = set(re.findall(r'namespace="([^"]+)"', metadata["query"]))
    assert namespaces == {scaled["metadata"]["namespace"]}, f"{overlay}: query namespaces {namespaces}"
    assert 'job="resnet50-serving"' in metadata["query"], "the job the PodMonitor gives the API's series"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scale_down_never_outpaces_a_drain(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    behavior = one(docs, "ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    grace = api_pod(docs).spec["terminationGracePeriodSeconds"]
    down = behavior["scaleDown"]
    for policy in down["policies"]:
        assert policy["type"] == "Pods" and policy["value"] == 1, "one pod at a time"
        assert policy["periodSeconds"] > grace, "the next pod goes only after the last one's drain has ended"
    assert down["stabilizationWindowSeconds"] >= 300, "a lull shorter than a cold start must not remove pods"


def test_the_cpu_target_is_its_own(rendered: dict[str, list[Doc]]) -> None:
    threshold = {o: one(rendered[o], "ScaledObject")["spec"]["triggers"][0]["metadata"]["threshold"] for o in OVERLAYS}
    assert float(threshold["overlays/cpu"]) < float(threshold["overlays/gpu"]), "a CPU pod saturates far earlier"
