"""The manifests against the real service: ``python -m app`` with the CPU overlay's settings on loopback.

Every probe path answers as its probe expects, on the port the probe names; every metric the autoscaler,
the alert rules and the dashboard read is one the service exports. CUDA-only metrics are checked against
the service's metric registry with CUDA tracking switched on, since no GPU runs here.
"""

from __future__ import annotations

import json

import httpx
import pytest

from app.metrics import Metrics
from tests.app.conftest import RunningServer
from tests.deploy.manifests import DEPLOY, OVERLAYS, Doc, api_pod, config_env, one
from tests.deploy.promql import SYNTHETIC, exposed_names, metric_names

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_probe_answers_on_the_real_server(
    rendered: dict[str, list[Doc]], cpu_server: RunningServer, overlay: str
) -> None:
    docs = rendered[overlay]
    container = api_pod(docs).spec["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    serve_port = int(config_env(docs, container)["SERVE_PORT"])
    for kind in PROBES:
        probe = container[kind]["httpGet"]
        port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
        assert port == serve_port, f"{overlay} {kind}: port {port}, but the service listens on {serve_port}"
        # The kubelet counts 200-399 as success; the server here listens on a free loopback port instead.
        response = httpx.get(cpu_server.url + probe["path"], timeout=5)
        assert 200 <= response.status_code < 400, f"{overlay} {kind} {probe['path']}: {response.status_code}"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", "readiness must wait for warm-up"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/ready", "start-up ends when warm-up does"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", "liveness must not restart a loading pod"


def named_expressions(rendered: dict[str, list[Doc]]) -> dict[str, str]:
    """Every PromQL expression of the autoscaler, the alert rules and the dashboard, by where it is."""
    docs = rendered["overlays/gpu"]
    exprs = {
        f"ScaledObject trigger {i}": t["metadata"]["query"]
        for i, t in enumerate(one(docs, "ScaledObject")["spec"]["triggers"])
    }
    for group in one(docs, "PrometheusRule")["spec"]["groups"]:
        exprs |= {f"alert {rule['alert']}": rule["expr"] for rule in group["rules"]}
    dashboard = json.loads((DEPLOY / "monitoring" / "resnet50-serving.json").read_text())
    panels = dashboard["panels"] + [child for panel in dashboard["panels"] for child in panel.get("panels", [])]
    for panel in panels:
        exprs |= {
            f"panel {panel['title']} {i}": t["expr"] for i, t in enumerate(panel.get("targets", [])) if "expr" in t
        }
    return exprs


def test_every_metric_read_is_exported(rendered: dict[str, list[Doc]], cpu_server: RunningServer) -> None:
    exported = exposed_names(httpx.get(cpu_server.url + "/metrics", timeout=5).text)
    cuda = Metrics()
    cuda.track_gpu_memory(lambda: 0.0, lambda: 0.0)  # what a CUDA pod registers on top
    cuda_only = exposed_names(cuda.render().decode()) - exported
    exprs = named_expressions(rendered)
    assert len(exprs) > 10, exprs
    for where, expr in exprs.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        missing = names - exported - cuda_only - SYNTHETIC
        assert not missing, f"{where} reads {sorted(missing)}, which the service does not export"


def test_a_metric_name_out_of_thin_air_is_caught(cpu_server: RunningServer) -> None:
    exported = exposed_names(httpx.get(cpu_server.url + "/metrics", timeout=5).text)
    assert metric_names('sum(rate(inference_images_served_total{job="x"}[1m]))') - exported == {
        "inference_images_served_total"
    }
    assert {"inference_queue_depth", "inference_request_duration_seconds_sum"} <= exported
    assert metric_names('histogram_quantile(0.99, sum by (job, le) (rate(x_bucket{route=~"/p.*"}[5m]))) > 1') == {
        "x_bucket"
    }
