"""The suite's sections, each with its own real server(s), at a size set by a ``Profile``.

The short suite in ``tests/reliability`` runs the same scenarios at CI size and asserts on them; the
runner (``python -m tests.reliability.support``) runs these sections and writes their figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.config import Settings
from benchmarks.images import benchmark_jpegs
from model import Preprocessing, build_model, save_checkpoint
from tests.reliability.support import access, badinput, doors, faults, model_faults, oip_probes, training_faults
from tests.reliability.support.disconnects import run_disconnects
from tests.reliability.support.overload import run_overload
from tests.reliability.support.pickle_guard import unpickling_calls
from tests.reliability.support.service import Service, free_port
from tests.reliability.support.shutdown import run_shutdown
from tests.reliability.support.soak import run_soak
from tests.reliability.support.v2fuzz import run_v2_fuzzing

REPO = Path(__file__).resolve().parents[3]
API_KEY = "reliability-suite-key"
AUTH = [("Authorization", f"Bearer {API_KEY}")]
# The service's defaults, written out: the scenarios' expectations (deadline, limits) depend on them.
MAX_BATCH_SIZE, REQUEST_TIMEOUT_S, MAX_UPLOAD_BYTES, CROP = 8, 30.0, 10 * 1024 * 1024, 224
# Holds a round of requests in one batch being collected, so clients can leave while queued; a short
# deadline answers stalled uploads within seconds.
DISCONNECT_ENV = {"SERVE_MAX_BATCH_DELAY_MS": "2000", "SERVE_MAX_BATCH_SIZE": "16", "SERVE_REQUEST_TIMEOUT_S": "6"}
DEFAULT_WEIGHT_FAULTS = (
    "missing file",
    "truncated to half",
    "corrupt header",
    "resnet18 tensors",
    "torch.save zip renamed .safetensors",
    "raw pickle renamed .safetensors",
)


@dataclass(frozen=True)
class Profile:
    decode_examples: int
    http_examples: int
    overload_s: float
    disconnect_rounds: int
    mid_uploads: int
    stalled_uploads: int
    shutdown_s: float  # of traffic before SIGTERM, and again after it
    soak_s: float
    soak_warmup_s: float
    forward_requests: int
    weight_faults: tuple[str, ...] | None  # None: every one
    kill_points: tuple[int, ...]  # bytes of last.ckpt written when SIGKILL lands
    v2_fuzz_examples: int  # over REST, and as many over gRPC


QUICK = Profile(300, 300, 8.0, 3, 5, 5, 3.0, 45.0, 15.0, 60, DEFAULT_WEIGHT_FAULTS, (32 << 20,), 300)
FULL = Profile(10_000, 3_000, 30.0, 20, 50, 40, 5.0, 600.0, 60.0, 300, None, (1 << 20, 64 << 20, 160 << 20), 2_500)


def write_serving_checkpoint(path: Path, seed: int = 0) -> Path:
    """A 3-class ResNet-50 with the default 224-pixel preprocessing: the real network's real cost."""
    torch.manual_seed(seed)
    net = build_model(3).state_dict()
    save_checkpoint(path, net, labels=["a", "b", "c"], preprocessing=Preprocessing(), trained=True, source="test")
    return path


@dataclass
class Workspace:
    """Where a run keeps its checkpoint, ONNX cache and server logs."""

    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.onnx_cache = self.root / "onnx"
        self.checkpoint = self.root / "serving.safetensors"
        if not self.checkpoint.exists():
            write_serving_checkpoint(self.checkpoint)

    def start(self, name: str, launcher: tuple[str, ...] = ("-m", "app"), **env: str) -> Service:
        """A server on the workspace's checkpoint, logging to ``<name>.log``."""
        log = self.root / f"{name}.log"
        return Service.start(self.checkpoint, log, launcher=launcher, SERVE_ONNX_CACHE_DIR=str(self.onnx_cache), **env)


def section_bad_input_and_access(profile: Profile, work: Workspace) -> dict[str, Any]:
    """Corpus, fuzzers and the API key on one server, which runs under the pickle guard throughout."""
    report = work.root / "unpickling.txt"
    guarded = ("-m", "tests.reliability.support.pickle_guard", str(report))
    prepare = badinput.decode_path(work.checkpoint, max_image_pixels=40_000_000)
    with work.start("bad-input", launcher=guarded, SERVE_API_KEY=API_KEY) as server:
        bad = badinput.run_bad_input(
            server,
            prepare,
            crop=CROP,
            limits=(MAX_UPLOAD_BYTES, MAX_BATCH_SIZE),
            examples=(profile.decode_examples, profile.http_examples),
            auth=AUTH,
        )
        body = benchmark_jpegs()[0]
        auth = access.run_auth_cases(server.url, access.auth_cases(API_KEY, [("Content-Type", "image/jpeg")]), body)
        answered = sum(bad.http.outcomes.values()) + len(bad.corpus) + len(auth)
        unpickled = unpickling_calls(report)
    return {"bad_input": bad, "auth": auth, "requests_under_guard": answered, "unpickled_while_serving": unpickled}


def section_doors(profile: Profile, work: Workspace) -> dict[str, Any]:
    """The admin reload and the Open Inference Protocol attacked (tests/reliability/test_doors.py, at size)."""
    folder = doors.ModelFolder.build(work.root / "doors", work.checkpoint, write_serving_checkpoint(work.root / "b", 1))
    port = free_port()
    env = {**folder.env(), "SERVE_GRPC_PORT": str(port)}
    with work.start("doors", **env) as server:
        grpc_target = f"127.0.0.1:{port}"
        probes = [doors.big_body_with_wrong_key(server), *doors.keyed_admin_probes(server)]
        probes += oip_probes.rest_probes(server, CROP) + oip_probes.grpc_probes(server, grpc_target)
        probes.append(oip_probes.wrong_key_flood(server, grpc_target))
        ids = oip_probes.logged_ids(server, grpc_target, benchmark_jpegs()[0])
        fuzz = run_v2_fuzzing(
            server.url, grpc_target, crop=CROP, examples=(profile.v2_fuzz_examples,) * 2, auth=doors.AUTH
        )
        tracebacks = server.tracebacks()
    with work.start("doors-keyless", SERVE_MODEL_PATH=str(folder.served), SERVE_GRPC_PORT="0") as server:
        probes += doors.keyless_admin_probes(server)
    with work.start("doors-reload", **folder.env()) as server:
        probes += doors.reload_path_probes(server, folder)
        fifo_closed = doors.fifo_has_no_reader(folder.fifo)
        sent = server.terminate()
        exit_code, exit_s = server.process.wait(timeout=REQUEST_TIMEOUT_S + 10), time.monotonic() - sent
    port = free_port()
    capped = {**folder.env(), "SERVE_GRPC_PORT": str(port), "SERVE_GRPC_MAX_CONCURRENT_RPCS": "4"}
    with work.start("doors-cap", **capped) as server:
        probes.append(oip_probes.concurrency_cap(server, f"127.0.0.1:{port}", cap=4))
    return {
        "probes": probes,
        "logged_ids": ids,
        "fuzz": fuzz,
        "tracebacks": tracebacks,
        "fifo_closed": fifo_closed,
        "exit_code": exit_code,
        "exit_s": exit_s,
    }


def section_overload(profile: Profile, work: Workspace) -> Any:
    with work.start("overload") as server:
        return run_overload(
            server,
            benchmark_jpegs(),
            factor=4.0,
            duration_s=profile.overload_s,
            clients=2 * MAX_BATCH_SIZE,
            deadline_s=REQUEST_TIMEOUT_S,
        )


def section_disconnects(profile: Profile, work: Workspace) -> Any:
    with work.start("disconnects", **DISCONNECT_ENV) as server:
        return run_disconnects(
            server,
            benchmark_jpegs()[0],
            rounds=profile.disconnect_rounds,
            per_round=8,
            dropped=5,
            mid_uploads=profile.mid_uploads,
            stalled=profile.stalled_uploads,
        )


def section_shutdown(profile: Profile, work: Workspace, capacity: float) -> Any:
    """Twice the capacity, so the queue is full when the signal comes."""
    with work.start("shutdown") as server:
        return run_shutdown(
            server,
            benchmark_jpegs(),
            rate=2 * capacity,
            before_s=profile.shutdown_s,
            after_s=profile.shutdown_s,
            grace_s=REQUEST_TIMEOUT_S + 1,
        )


def section_soak(profile: Profile, work: Workspace, capacity: float) -> Any:
    with work.start("soak") as server:
        return run_soak(
            server, benchmark_jpegs(), rate=0.7 * capacity, duration_s=profile.soak_s, warmup_s=profile.soak_warmup_s
        )


def section_faults(profile: Profile, work: Workspace) -> dict[str, Any]:
    starts, marker = faults.run_weight_faults(
        work.checkpoint, work.root / "faults", work.onnx_cache, profile.weight_faults
    )
    settings = Settings(
        model_path=work.checkpoint, backend="torch", device="cpu", max_batch_delay_ms=2, onnx_cache_dir=work.onnx_cache
    )
    forward = asyncio.run(
        model_faults.run_forward_faults(
            settings, benchmark_jpegs()[0], requests=profile.forward_requests, concurrency=16, period=3
        )
    )
    return {"weights": starts, "marker_created": marker, "forward": forward}


def section_training(profile: Profile, work: Workspace) -> Any:
    return training_faults.run_training_faults(work.root / "training", profile.kill_points)


def section_static() -> dict[str, Any]:
    return {
        "floors": [as_plain(check) | {"below": check.below} for check in access.check_floors(REPO / "pyproject.toml")],
        "dockerfile_user": access.final_stage_user(REPO / "Dockerfile"),
        "compose_users": access.compose_users(REPO / "docker-compose.yml"),
    }


def as_plain(value: Any) -> Any:
    """Dataclasses (nested in dicts and lists) as plain JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_plain(v) for v in value]
    return value
