"""Model updates without downtime, on the real server (``python -m app``) under closed-loop load.

Two checkpoints that disagree on every image (their heads are biased towards different classes) let each
answer be checked against the version it names; a corrupt file must never serve.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from model import build_model, save_checkpoint
from tests.app.conftest import RunningServer
from tests.conftest import TINY_LABELS, TINY_PREPROCESSING

ADMIN_KEY = "reload-test-key"
SERVER = {
    "SERVE_BACKEND": "torch",
    "SERVE_DEVICE": "cpu",
    "SERVE_DECODE_THREADS": "1",
    "SERVE_LOG_LEVEL": "info",
    "SERVE_ADMIN_KEY": ADMIN_KEY,
}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass(frozen=True)
class Checkpoints:
    a: Path
    b: Path
    corrupt: Path
    top1: dict[str, str]  # version -> the label every image gets from it


def biased_checkpoint(path: Path, favourite: int) -> str:
    torch.manual_seed(0)
    net = build_model(len(TINY_LABELS))
    with torch.no_grad():
        net.fc.bias.zero_()
        net.fc.bias[favourite] = 50.0  # outweighs any image's logits: this class wins everywhere
    return save_checkpoint(
        path, net.state_dict(), labels=TINY_LABELS, preprocessing=TINY_PREPROCESSING, trained=True, source="test"
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    root = tmp_path_factory.mktemp("reload")
    a, b, corrupt = root / "a.safetensors", root / "b.safetensors", root / "corrupt.safetensors"
    version_a, version_b = biased_checkpoint(a, 0), biased_checkpoint(b, 1)
    corrupt.write_bytes(b.read_bytes()[: b.stat().st_size // 2])  # truncated mid-tensor
    return Checkpoints(a, b, corrupt, {version_a: TINY_LABELS[0], version_b: TINY_LABELS[1]})


@dataclass
class ClosedLoop:
    """Clients that each send the next request as soon as the last one is answered, until stopped."""

    url: str
    body: bytes
    clients: int = 4
    answers: list[tuple[int, str, str]] = field(default_factory=list)  # status, version, top-1 label
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[ClosedLoop]:
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=60)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", content=self.body, headers={"content-type": "image/jpeg"})
                except httpx.HTTPError as exc:  # a dropped connection is a lost request
                    self.errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.answers.append((r.status_code, "", r.text))
                    continue
                answer = r.json()
                self.answers.append((200, answer["model"]["version"], answer["predictions"][0]["label"]))


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def model_info_versions(url: str) -> set[str]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        sample.labels["version"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inference_model_info"
    }


def reload(url: str, path: Path) -> httpx.Response:
    return httpx.post(f"{url}/admin/reload", json={"path": str(path)}, headers=ADMIN, timeout=120)


def alternate_reloads(url: str, ckpt: Checkpoints, rounds: int) -> list[httpx.Response]:
    """B, A, B, A, … with the corrupt file in the middle; each waits for the last."""
    answers = []
    for i in range(rounds):
        if i == rounds // 2:
            answers.append(reload(url, ckpt.corrupt))
        answers.append(reload(url, ckpt.b if i % 2 == 0 else ckpt.a))
    return answers


def check_rolling_reloads(server: RunningServer, ckpt: Checkpoints, cat_jpeg: bytes, rounds: int) -> dict[str, float]:
    """Reload ``rounds`` times (and once with the corrupt file) under load; every answer checked."""
    version_a, version_b = list(ckpt.top1)
    with ClosedLoop(server.url, cat_jpeg).running() as load:
        time.sleep(0.5)
        answers = alternate_reloads(server.url, ckpt, rounds)
        time.sleep(0.5)
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == rounds and statuses.count(422) == 1, [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 422).json()["error"]
    assert refused["code"] == "invalid_model" and str(ckpt.corrupt) in refused["message"]
    assert not load.errors, load.errors[:3]
    assert len(load.answers) > 2 * rounds
    assert all(status == 200 for status, _, _ in load.answers), [a for a in load.answers if a[0] != 200][:3]
    served = {version for _, version, _ in load.answers}
    assert served <= {version_a, version_b} and len(served) == 2, served
    assert all(label == ckpt.top1[version] for _, version, label in load.answers)  # the model named computed it
    final = version_b if rounds % 2 else version_a
    assert httpx.get(f"{server.url}/model", timeout=30).json()["version"] == final
    assert model_info_versions(server.url) == {final}  # the old series are gone
    return {result: metric(server.url, "inference_model_reloads_total", result=result) for result in ("ok", "failed")}


def test_reloads_under_load_lose_nothing_and_answers_name_their_model(
    server_factory: Callable[..., RunningServer], checkpoints: Checkpoints, cat_jpeg: bytes
) -> None:
    server = server_factory(SERVE_MODEL_PATH=str(checkpoints.a), **SERVER)
    counts = check_rolling_reloads(server, checkpoints, cat_jpeg, rounds=10)
    assert counts == {"ok": 10, "failed": 1}
    model = httpx.get(f"{server.url}/model", timeout=30).json()
    assert model["last_reload"]["result"] == "ok" and model["last_reload"]["file"] == checkpoints.a.name
    assert "path" not in model["last_reload"]  # where the file lives is for the admin's answer only
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    reloaded = [line for line in lines if line["message"].startswith("reloaded ")]
    failed = [line for line in lines if line["message"].startswith("reload of ") and line["level"] == "error"]
    assert len(reloaded) == 10 and len(failed) == 1, [line["message"] for line in lines][-20:]
    assert "->" in reloaded[0]["message"] and str(checkpoints.corrupt) in failed[0]["message"]


def test_rolling_reloads_across_workers(
    server_factory: Callable[..., RunningServer], checkpoints: Checkpoints, cat_jpeg: bytes
) -> None:
    server = server_factory(SERVE_MODEL_PATH=str(checkpoints.a), SERVE_WORKERS="2", **SERVER)
    answer = reload(server.url, checkpoints.b)
    assert answer.status_code == 200, answer.text
    workers = answer.json()["workers"]
    assert [w["result"] for w in workers] == ["ok", "ok"] and len({w["pid"] for w in workers}) == 2
    counts = check_rolling_reloads(server, checkpoints, cat_jpeg, rounds=10)
    assert counts == {"ok": 2 * 11, "failed": 1}  # every worker counts its own; the corrupt file stops at the first


def test_a_new_file_renamed_onto_the_model_path_is_served(
    server_factory: Callable[..., RunningServer], checkpoints: Checkpoints, tmp_path: Path
) -> None:
    served = tmp_path / "model.safetensors"
    served.write_bytes(checkpoints.a.read_bytes())
    server = server_factory(SERVE_MODEL_PATH=str(served), SERVE_WATCH_MODEL="true", **SERVER)
    version_b = list(checkpoints.top1)[1]
    incoming = tmp_path / ".incoming"
    incoming.write_bytes(checkpoints.b.read_bytes())
    os.replace(incoming, served)
    assert wait_for(lambda: httpx.get(f"{server.url}/model", timeout=30).json()["version"] == version_b)
    with served.open("r+b") as f:  # written in place, not renamed: ignored, never half-read
        f.write(b"garbage")
    time.sleep(3)
    assert httpx.get(f"{server.url}/model", timeout=30).json()["version"] == version_b
    assert metric(server.url, "inference_model_reloads_total", result="failed") == 0


def test_sigterm_during_a_reload_drains_cleanly(
    server_factory: Callable[..., RunningServer], checkpoints: Checkpoints, cat_jpeg: bytes
) -> None:
    # A warm-up at batch 64 makes the reload last a second or two, so the signal lands in the middle of it.
    server = server_factory(SERVE_MODEL_PATH=str(checkpoints.a), SERVE_MAX_BATCH_SIZE="64", **SERVER)
    reloading = threading.Thread(target=reload, args=(server.url, checkpoints.b))
    with ClosedLoop(server.url, cat_jpeg, clients=2).running() as load:
        time.sleep(0.5)
        reloading.start()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=120) == 0, server.log()
    reloading.join(timeout=60)
    messages = [json.loads(line)["message"] for line in server.log().splitlines() if line.startswith("{")]
    drained = next(i for i, m in enumerate(messages) if m.startswith("draining"))
    reloaded = next(i for i, m in enumerate(messages) if m.startswith("reloaded "))
    assert drained < reloaded, messages  # the signal came while the new model was loading
    served = [status for status, _, _ in load.answers]
    assert served.count(200) > 0 and set(served) <= {200, 503}, served  # accepted: served; after: refused
    # Every answer the server gave reached its client: the drain lost none (transport errors come only once
    # it stopped listening, for requests never accepted).
    answered = [m for m in messages if m.startswith("POST /predict 200")]
    assert len(answered) == served.count(200), (len(answered), served.count(200), load.errors[:3])


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
