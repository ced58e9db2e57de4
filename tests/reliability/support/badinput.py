"""Bad input at volume: the named cases against the real server, then Hypothesis fuzzing of the decode path
(in process) and of the HTTP layer (over loopback). No case may get a 5xx, crash, hang or leak."""

from __future__ import annotations

import resource
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hypothesis import HealthCheck, Phase, given, seed, settings

from app.engine.backends import resolve_runtime
from app.engine.classifier import load_classifier
from app.errors import ServiceError
from tests.reliability.support.corpus import Outcome, all_cases, outcome_label, run_cases
from tests.reliability.support.fuzzing import hostile_images, http_requests
from tests.reliability.support.rawhttp import Hang, RawRequest, exchange
from tests.reliability.support.service import Service

HANG_S = 20.0  # a case not answered within this is a hang, whatever the machine's load


@dataclass
class FuzzReport:
    """How many cases ran, what they got, the slowest, and the (shrunk) failure if any."""

    target: str
    cases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    slowest_ms: float = 0.0
    failure: str | None = None

    def record(self, label: str, started: float) -> None:
        self.cases += 1
        self.outcomes[label] = self.outcomes.get(label, 0) + 1
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.shrink),
        print_blob=True,
    )


def decode_path(checkpoint: Path, max_image_pixels: int) -> Callable[[bytes], object]:
    """The service's own decode path (``Classifier.prepare``) for ``checkpoint``, on the CPU."""
    runtime = resolve_runtime(device="cpu", backend="torch", precision="fp32", decode="cpu", cuda_devices=0)
    classifier = load_classifier(
        checkpoint, runtime, max_batch_size=1, max_image_pixels=max_image_pixels, threads=1, onnx_cache_dir=None
    )
    return classifier.prepare


def check_decoded(prepare: Callable[[bytes], object], data: bytes, crop: int) -> str:
    """One image through the decode path: a (3, crop, crop) uint8 tensor, or one of the service's own errors."""
    try:
        pixels = prepare(data)
    except ServiceError as exc:
        return exc.code
    assert isinstance(pixels, torch.Tensor), type(pixels)
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (3, crop, crop), (pixels.dtype, pixels.shape)
    return "ok"


def fuzz_decode(prepare: Callable[[bytes], object], crop: int, examples: int, seed_value: int) -> FuzzReport:
    """Hostile images straight into the decode path; any other exception is a failure."""
    report = FuzzReport("decode path")

    @seed(seed_value)
    @fuzz_settings(examples)
    @given(hostile_images())
    def case(data: bytes) -> None:
        started = time.perf_counter()
        report.record(check_decoded(prepare, data, crop), started)

    try:
        with warnings.catch_warnings():  # Pillow warns about every large header; the answers are what count
            warnings.simplefilter("ignore")
            case()
    except Exception as exc:  # Hypothesis re-raises the shrunk failure: recorded, not fatal to the run
        report.failure = f"{type(exc).__name__}: {exc}"
    return report


def check_exchange(url: str, request: RawRequest) -> str:
    """One request over a fresh connection: it must get an HTTP answer below 500, in time."""
    try:
        response = exchange(url, request, timeout_s=HANG_S)
    except Hang as exc:
        raise AssertionError(f"hang: {exc}") from None
    label = outcome_label(response)
    assert 0 < response.status < 500, f"{label} for {request.method} {request.target}"
    assert not response.trailing, "a second answer on one request"
    return label


def fuzz_http(url: str, examples: int, seed_value: int, auth: Sequence[tuple[str, str]] = ()) -> FuzzReport:
    """Fuzzed requests against the real server."""
    report = FuzzReport("HTTP layer")

    @seed(seed_value)
    @fuzz_settings(examples)
    @given(http_requests(auth))
    def case(request: RawRequest) -> None:
        started = time.perf_counter()
        report.record(check_exchange(url, request), started)

    try:
        case()
    except Exception as exc:
        report.failure = f"{type(exc).__name__}: {exc}"
    return report


@dataclass
class BadInputResult:
    corpus: list[Outcome]
    decode: FuzzReport
    http: FuzzReport
    decode_peak_rss_growth_mib: float
    server_rss_mib: tuple[float, float]  # before, after
    server_fds: tuple[int, int]
    tracebacks: list[str]
    ready_after: bool

    @property
    def corpus_failures(self) -> list[Outcome]:
        return [o for o in self.corpus if not o.passed]


def run_bad_input(
    service: Service,
    prepare: Callable[[bytes], object],
    *,
    crop: int,
    limits: tuple[int, int],
    examples: tuple[int, int],
    seed_value: int = 0,
    auth: Sequence[tuple[str, str]] = (),
) -> BadInputResult:
    """The corpus and both fuzzers; ``limits`` is (max upload bytes, max batch size), ``examples`` (decode, HTTP)."""
    rss, fds = service.rss_mib(), service.open_fds()
    corpus = run_cases(service.url, all_cases(*limits), auth)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    decode = fuzz_decode(prepare, crop, examples[0], seed_value)
    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before
    http = fuzz_http(service.url, examples[1], seed_value, auth)
    time.sleep(0.5)  # let the server close the last connections before counting descriptors
    return BadInputResult(
        corpus=corpus,
        decode=decode,
        http=http,
        decode_peak_rss_growth_mib=peak_growth,
        server_rss_mib=(rss, service.rss_mib()),
        server_fds=(fds, service.open_fds()),
        tracebacks=service.tracebacks(),
        ready_after=service.is_ready(),
    )
