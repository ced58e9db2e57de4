"""The doors beside ``/predict`` against real servers: the admin reload (the key checked from the head, no
key no admin, only regular files of a bounded size inside the model directory), the Open Inference Protocol
over REST and gRPC (no 500, no stalled event loop, bounded and escaped request ids, a cap on gRPC calls) and
its fuzzing. The probes are in ``tests/reliability/support/doors.py``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
import torch

from benchmarks.images import benchmark_jpegs
from model import Preprocessing, build_model, save_checkpoint
from tests.reliability.support import doors, oip_probes
from tests.reliability.support.doors import ModelFolder, Probe
from tests.reliability.support.service import Service, free_port
from tests.reliability.support.suite import CROP, REQUEST_TIMEOUT_S, Workspace
from tests.reliability.support.v2fuzz import run_v2_fuzzing

# /health/live while a hostile request is handled. The target is 100 ms, checked by the full runner's figures on a
# quiet machine (docs/reliability.md); here, on a loaded CI machine, the bound catches what the target is about:
# the 0.9-1.4 s stalls one request caused before, without failing on scheduling noise.
HEALTH_MS = 250


@pytest.fixture(scope="module")
def folder(workspace: Workspace) -> ModelFolder:
    other = workspace.root / "doors-other.safetensors"
    if not other.exists():
        torch.manual_seed(1)
        net = build_model(3).state_dict()
        save_checkpoint(other, net, labels=["a", "b", "c"], preprocessing=Preprocessing(), trained=True, source="test")
    return ModelFolder.build(workspace.root / "doors", workspace.checkpoint, other)


class DoorsServer:
    def __init__(self, service: Service, grpc_port: int) -> None:
        self.service, self.grpc = service, f"127.0.0.1:{grpc_port}"


def start(workspace: Workspace, folder: ModelFolder, name: str, **env: str) -> tuple[Service, int]:
    port = free_port()
    log = workspace.root / f"{name}.log"
    environ = {"SERVE_ONNX_CACHE_DIR": str(workspace.onnx_cache), "SERVE_GRPC_PORT": str(port), **folder.env(), **env}
    return Service.start(folder.served, log, **environ), port


@pytest.fixture(scope="module")
def doors_server(workspace: Workspace, folder: ModelFolder) -> Iterator[DoorsServer]:
    service, port = start(workspace, folder, "doors")
    with service:
        yield DoorsServer(service, port)


def statuses(probes: list[Probe]) -> dict[str, int | str]:
    return {probe.name: probe.status for probe in probes}


def test_a_wrong_admin_key_is_refused_from_the_head_before_the_body(doors_server: DoorsServer) -> None:
    probe = doors.big_body_with_wrong_key(doors_server.service, body_mib=256)
    assert probe.status == 401, probe
    assert probe.seconds < 2, probe  # reading 256 MiB first took many seconds
    assert probe.rss_growth_mib < 50, probe


def test_admin_bodies_are_json_small_and_read_only_after_the_key(doors_server: DoorsServer) -> None:
    got = statuses(doors.keyed_admin_probes(doors_server.service))
    assert got == {
        "wrong key, body '{'": 401,
        "no key sent, JSON body": 401,
        "the API key, not the admin key": 401,
        "right key, text/plain body": 415,
        "right key, form body": 415,
        "right key, a body of 64 KiB + 1": 413,
        "right key, body '{'": 422,
        "right key, a 5,000-digit number": 422,
        "right key, an unknown field": 422,
    }


def test_without_a_key_admin_is_refused_to_every_address_origin_and_host(
    workspace: Workspace, folder: ModelFolder
) -> None:
    service, _ = start(workspace, folder, "doors-keyless", SERVE_ADMIN_KEY="", SERVE_API_KEY="", SERVE_GRPC_PORT="0")
    with service:
        probes = doors.keyless_admin_probes(service)
    assert set(statuses(probes).values()) == {403}, probes
    assert all("SERVE_ADMIN_KEY" in probe.message for probe in probes)


def test_reloads_read_only_regular_files_inside_the_model_directory(workspace: Workspace, folder: ModelFolder) -> None:
    service, _ = start(workspace, folder, "doors-reload", SERVE_GRPC_PORT="0")
    with service:
        probes = doors.reload_path_probes(service, folder)
        model = httpx.get(f"{service.url}/model", timeout=10).json()
        fifo_closed = doors.fifo_has_no_reader(folder.fifo)
        sent = service.terminate()
        code = service.process.wait(timeout=REQUEST_TIMEOUT_S + 10)
        stopped_s = time.monotonic() - sent
    refused, served = probes[:-1], probes[-1]
    assert [p.status for p in refused] == [422] * len(refused), refused
    assert all(p.seconds < 1 and p.rss_growth_mib < 20 for p in refused), refused
    outside = [p for p in refused if "inside the model directory" in p.message]
    assert len(outside) == 7 and not any(re.search(r"/etc|/dev|outside|nonexistent", p.message) for p in outside)
    assert served.status == 200, served
    assert fifo_closed  # nothing kept the FIFO open
    assert model["last_reload"]["file"] == folder.other.name and "path" not in model["last_reload"]
    assert code == 0 and stopped_s < REQUEST_TIMEOUT_S + 1


def test_malformed_v2_requests_are_400_and_never_stall_the_event_loop(doors_server: DoorsServer) -> None:
    probes = oip_probes.rest_probes(doors_server.service, CROP)
    hostile, real = probes[:-2], probes[-2:]
    assert [p.status for p in hostile] == [400] * len(hostile), hostile
    assert [p.status for p in real] == [200, 200], real
    assert all(p.health_worst_ms is not None and p.health_worst_ms <= HEALTH_MS for p in probes), probes
    assert not doors_server.service.tracebacks()


def test_hostile_grpc_messages_are_refused_cheaply(doors_server: DoorsServer) -> None:
    probes = oip_probes.grpc_probes(doors_server.service, doors_server.grpc)
    assert statuses(probes) == {
        "BYTES [1] holding 10 MiB of zeros (raw contents)": "INVALID_ARGUMENT",
        "5 million empty bytes_contents": "INVALID_ARGUMENT",
        "a wrong key, then a 10 MiB message": "UNAUTHENTICATED",
        "not a protobuf message": "INVALID_ARGUMENT",
    }
    assert all(p.health_worst_ms is not None and p.health_worst_ms <= HEALTH_MS for p in probes), probes
    flood = oip_probes.wrong_key_flood(doors_server.service, doors_server.grpc, calls=50)
    assert flood.status == "UNAUTHENTICATED" and flood.rss_growth_mib < 100, flood


def test_grpc_request_ids_are_logged_bounded_and_escaped(doors_server: DoorsServer) -> None:
    newline, huge = oip_probes.logged_ids(doors_server.service, doors_server.grpc, benchmark_jpegs()[0])
    for line in (newline, huge):
        assert re.fullmatch(r"[0-9a-f]{32}", str(line["request_id"])), line["request_id"]  # a fresh id
        assert len(str(line["client_request_id"])) <= 1300 and "\n" not in str(line["client_request_id"])
    assert str(newline["client_request_id"]).startswith("ok\\n")
    forged = [r for r in doors_server.service.log_records() if r.get("message") == "forged"]
    assert forged == []
    assert max(len(raw) for raw in doors_server.service.log_path.read_text().splitlines()) < 10_000


def test_grpc_calls_beyond_the_cap_are_refused_at_once(workspace: Workspace, folder: ModelFolder) -> None:
    service, port = start(workspace, folder, "doors-cap", SERVE_GRPC_MAX_CONCURRENT_RPCS="4")
    with service:
        probe = oip_probes.concurrency_cap(service, f"127.0.0.1:{port}", cap=4)
    assert probe.status == "RESOURCE_EXHAUSTED then NOT_FOUND", probe  # the next one is served (no model named)
    assert probe.seconds < 2, probe


def test_fuzzed_v2_requests_get_4xx_over_rest_and_grpc(doors_server: DoorsServer) -> None:
    result = run_v2_fuzzing(
        doors_server.service.url, doors_server.grpc, crop=CROP, examples=(300, 300), auth=doors.AUTH
    )
    assert result.rest.failure is None, result.rest.failure
    assert result.grpc.failure is None, result.grpc.failure
    assert result.rest.cases >= 300 and result.grpc.cases >= 300
    assert result.health_worst_ms <= HEALTH_MS, result.health_worst_ms
    assert result.same_answer_after and result.ready_after
    assert not doors_server.service.tracebacks()
