"""The HTTP API through the real app and lifespan: answers, headers, batch endpoint, metadata, metrics."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from model.checkpoint import file_version
from tests.app.conftest import MakeClient
from tests.conftest import TINY_LABELS, encode, photo

pytestmark = pytest.mark.anyio
SERVER_TIMING = re.compile(r"decode;dur=[\d.]+, queue;dur=[\d.]+, inference;dur=[\d.]+, total;dur=[\d.]+")


async def test_predict_multipart_answers_ranked_probabilities(
    client: httpx.AsyncClient, cat_jpeg: bytes, tiny_checkpoint: Path
) -> None:
    response = await client.post("/predict", files={"file": ("cat.jpg", cat_jpeg, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["model"] == {"name": "resnet50", "version": file_version(tiny_checkpoint.read_bytes())}
    predictions = body["predictions"]
    assert [p["rank"] for p in predictions] == [1, 2, 3]  # top_k 5, but the tiny model has 3 classes
    assert sorted(p["class_id"] for p in predictions) == [0, 1, 2]
    assert all(p["label"] == TINY_LABELS[p["class_id"]] for p in predictions)
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-5
    assert set(body["timing_ms"]) == {"decode", "queue", "inference", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["inference"] > 0
    assert body["batch_size"] == 1
    assert SERVER_TIMING.fullmatch(response.headers["server-timing"])


async def test_raw_body_and_multipart_give_the_same_answer(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    multipart = await client.post("/predict", files={"file": ("cat.jpg", cat_jpeg, "image/jpeg")})
    raw = await client.post("/predict", content=cat_jpeg, headers={"content-type": "image/jpeg"})
    octets = await client.post("/predict", content=cat_jpeg, headers={"content-type": "application/octet-stream"})
    assert raw.status_code == octets.status_code == 200
    assert raw.json()["predictions"] == multipart.json()["predictions"] == octets.json()["predictions"]


async def test_top_k_limits_the_predictions(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    response = await client.post("/predict?top_k=1", content=cat_jpeg, headers={"content-type": "image/jpeg"})
    assert [p["rank"] for p in response.json()["predictions"]] == [1]


async def test_the_client_request_id_is_echoed_and_a_bad_one_replaced(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health/live", headers={"x-request-id": "trace-42.a"})
    assert echoed.headers["x-request-id"] == "trace-42.a"
    replaced = await client.get("/health/live", headers={"x-request-id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


async def test_batch_answers_each_file_in_its_slot(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    files = [
        ("files", ("cat.jpg", cat_jpeg, "image/jpeg")),
        ("files", ("notes.txt", b"not an image", "text/plain")),
        ("files", ("coffee.png", encode(photo("coffee"), "PNG"), "image/png")),
    ]
    response = await client.post("/predict/batch?top_k=2", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["filename"] for r in results] == ["cat.jpg", "notes.txt", "coffee.png"]
    assert results[1]["error"]["code"] == "invalid_image" and results[1]["predictions"] is None
    for good in (results[0], results[2]):
        assert good["error"] is None and len(good["predictions"]) == 2 and good["batch_size"] >= 1
    single = await client.post("/predict?top_k=2", content=cat_jpeg, headers={"content-type": "image/jpeg"})
    assert [p["class_id"] for p in results[0]["predictions"]] == [p["class_id"] for p in single.json()["predictions"]]
    assert SERVER_TIMING.fullmatch(response.headers["server-timing"])


async def test_batch_files_are_batched_together(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    files = [("files", (f"{i}.jpg", cat_jpeg, "image/jpeg")) for i in range(4)]
    results = (await client.post("/predict/batch", files=files)).json()["results"]
    sizes = [r["batch_size"] for r in results]
    # Decoding finishes before submission, so all four are queued at once: one batch of four.
    assert sizes == [4, 4, 4, 4]


async def test_model_metadata(make_client: MakeClient, tiny_checkpoint: Path) -> None:
    async with make_client(max_batch_size=4, max_batch_delay_ms=3) as (client, _):
        body = (await client.get("/model")).json()
    assert body["name"] == body["arch"] == "resnet50"
    assert body["version"] == file_version(tiny_checkpoint.read_bytes())
    assert (body["num_classes"], body["trained"], body["source"]) == (3, True, "test")
    assert (body["device"], body["precision"], body["backend"]) == ("cpu", "fp32", "torch")
    assert body["preprocessing"]["crop_size"] == 64 and body["preprocessing"]["resize_size"] == 72
    assert body["metrics"] == {"top1": 33.3}
    assert body["batching"] == {
        "max_batch_size": 4,
        "max_batch_delay_ms": 3.0,
        "max_queue_size": 64,
        "request_timeout_s": 30.0,
    }


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/ready")).json() == {"status": "ready"}


async def test_metrics_expose_every_designed_family(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    await client.post("/predict", content=cat_jpeg, headers={"content-type": "image/jpeg"})
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    expected = {
        "inference_requests": "counter",
        "inference_request_duration_seconds": "histogram",
        "inference_decode_duration_seconds": "histogram",
        "inference_queue_wait_seconds": "histogram",
        "inference_batch_duration_seconds": "histogram",
        "inference_batch_size": "histogram",
        "inference_queue_depth": "gauge",
        "inference_rejections": "counter",
        "inference_model_info": "gauge",
        "inference_ready": "gauge",
    }
    assert {name: families[name].type for name in expected} == expected
    assert "inference_gpu_memory_bytes" not in families  # CUDA only
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("inference_requests_total", (("code", "200"), ("route", "/predict")))] == 1
    assert samples[("inference_ready", ())] == 1
    info = [s for s in families["inference_model_info"].samples]
    assert info[0].value == 1 and info[0].labels["device"] == "cpu" and info[0].labels["precision"] == "fp32"
    buckets = [s.labels["le"] for s in families["inference_batch_size"].samples if s.name.endswith("_bucket")]
    assert buckets == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0", "+Inf"]
    assert samples[("inference_batch_size_count", ())] >= 1
    assert samples[("inference_decode_duration_seconds_count", ())] >= 1


async def test_openapi_documents_the_endpoints_and_bodies(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/predict", "/predict/batch", "/health/live", "/health/ready", "/model", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body)
    assert "PredictResponse" in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200
