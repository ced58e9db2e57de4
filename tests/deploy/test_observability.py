"""One source of truth: the Kubernetes alert rules and dashboard are the compose stack's, unchanged."""

from __future__ import annotations

import json

import yaml

from tests.deploy.manifests import DEPLOY, REPO, Doc, one


def test_the_prometheus_rule_is_docker_alerts_yml(rendered: dict[str, list[Doc]]) -> None:
    alerts = yaml.safe_load((REPO / "docker" / "alerts.yml").read_text())
    for overlay in ("overlays/gpu", "overlays/cpu", "overlays/kserve"):
        assert one(rendered[overlay], "PrometheusRule")["spec"] == alerts, (
            f"{overlay}: deploy/kubernetes/monitoring/prometheusrule.yaml differs from docker/alerts.yml; "
            "copy its groups over"
        )


def test_the_dashboard_is_the_compose_stacks(rendered: dict[str, list[Doc]]) -> None:
    source = (REPO / "docker" / "grafana" / "dashboards" / "resnet50-serving.json").read_text()
    copy = (DEPLOY / "monitoring" / "resnet50-serving.json").read_text()
    assert copy == source, "deploy/kubernetes/monitoring/resnet50-serving.json differs from docker/grafana's: copy it"
    config_map = one(rendered["overlays/gpu"], "ConfigMap", "resnet50-serving-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1", "Grafana's sidecar loads labelled maps"
    assert json.loads(config_map["data"]["resnet50-serving.json"]) == json.loads(source)


def test_the_pod_monitor_scrapes_the_api_under_the_rules_job(rendered: dict[str, list[Doc]]) -> None:
    alerts_job = "resnet50-serving"  # docker/prometheus.yml's job, which InferenceDown selects
    for overlay in ("overlays/gpu", "overlays/kserve"):
        docs = rendered[overlay]
        monitor = one(docs, "PodMonitor")
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        assert {"targetLabel": "job", "replacement": alerts_job} in endpoint["relabelings"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        pods = [d for d in docs if d["kind"] in ("Deployment", "InferenceService")]
        [api] = pods
        labels = (
            api["spec"]["template"]["metadata"]["labels"]
            if api["kind"] == "Deployment"
            else api["spec"]["predictor"]["labels"]
        )
        assert selector.items() <= labels.items(), f"{overlay}: the PodMonitor selects no API pod"
        container = (
            api["spec"]["template"]["spec"]["containers"][0]
            if api["kind"] == "Deployment"
            else api["spec"]["predictor"]["containers"][0]
        )
        assert endpoint["port"] in {port["name"] for port in container["ports"]}, overlay
