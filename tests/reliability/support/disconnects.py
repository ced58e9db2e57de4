"""Clients that go away: some disconnect while their request waits for its batch, some in the middle of
their upload. Their images must never reach the model (the batch-size histogram counts every image the
model ran), each must be counted, and nothing may leak: descriptors, threads, memory.

The server runs with a long batch delay, so a round's requests all wait in one batch being collected,
and a short deadline, so clients that stall in the middle of their upload are answered within seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.reliability.support.rawhttp import parse_response
from tests.reliability.support.service import Samples, Service, metric
from tests.reliability.support.traffic import request_bytes


@dataclass
class DisconnectResult:
    rounds: int
    per_round: int
    dropped_per_round: int
    model_images: float = 0.0  # images the model ran, from the batch-size histogram
    expected_model_images: int = 0
    counted_disconnects: float = 0.0  # inference_rejections_total{reason="disconnected"}
    mid_upload: int = 0
    counted_mid_upload: float = 0.0  # 499s in inference_requests_total
    answered: dict[int, int] = field(default_factory=dict)  # status -> count, for the clients that stayed
    stalled_answers: dict[int, int] = field(default_factory=dict)  # uploads that stop half-way: status -> count
    stalled_answered_after_s: float = 0.0  # the slowest of those answers, from the start of the upload
    served_while_stalled: int = 0  # the status of a normal request sent meanwhile
    fds: tuple[int, int] = (0, 0)  # before, after
    threads: tuple[int, int] = (0, 0)
    rss_mib: tuple[float, float] = (0.0, 0.0)


def _wait_for(probe: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not get there in time")
        time.sleep(0.02)


def _connect_and_send(url: str, payload: bytes) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30)
    sock.sendall(payload)
    return sock


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    return parse_response(data)[0]


def _decoded(samples: Samples) -> float:
    return metric(samples, "inference_decode_duration_seconds_count")


def _gone(samples: Samples) -> float:
    return metric(samples, "inference_rejections_total", reason="disconnected")


def _hung_up(samples: Samples) -> float:
    """Requests the server saw end without anyone to answer (logged and counted as 499)."""
    return metric(samples, "inference_requests_total", route="/predict", code="499")


def _model_images(samples: Samples) -> float:
    return metric(samples, "inference_batch_size_sum")


def one_round(service: Service, body: bytes, result: DisconnectResult, index: int) -> None:
    """``per_round`` requests wait in one batch; ``dropped_per_round`` of them hang up; the rest are answered."""
    before = service.metrics()
    socks = [
        _connect_and_send(service.url, request_bytes(service.url, body, f"gone-{index}-{i}"))
        for i in range(result.per_round)
    ]
    _wait_for(lambda: _decoded(service.metrics()) >= _decoded(before) + result.per_round)
    for sock in socks[: result.dropped_per_round]:
        sock.close()
    _wait_for(lambda: _gone(service.metrics()) >= _gone(before) + result.dropped_per_round)
    for sock in socks[result.dropped_per_round :]:
        status = _read_status(sock)
        result.answered[status] = result.answered.get(status, 0) + 1
        sock.close()


def mid_upload(service: Service, body: bytes, index: int) -> None:
    """Declare the whole body, send half of it, hang up."""
    payload = request_bytes(service.url, body, f"half-{index}")
    sock = _connect_and_send(service.url, payload[: len(payload) - len(body) // 2])
    sock.close()


def stalled_uploads(service: Service, body: bytes, count: int, result: DisconnectResult) -> None:
    """``count`` clients send half their body and stall: a normal request is served meanwhile, and each
    stalled one is answered (504) once its deadline passes; the stalled clients hold no place."""
    began = time.monotonic()
    payloads = [request_bytes(service.url, body, f"stalled-{i}") for i in range(count)]
    socks = [_connect_and_send(service.url, p[: len(p) - len(body) // 2]) for p in payloads]
    normal = _connect_and_send(service.url, request_bytes(service.url, body, "while-stalled"))
    result.served_while_stalled = _read_status(normal)
    normal.close()
    for sock in socks:
        status = _read_status(sock)
        result.stalled_answers[status] = result.stalled_answers.get(status, 0) + 1
        result.stalled_answered_after_s = time.monotonic() - began
        sock.close()


def run_disconnects(
    service: Service, body: bytes, *, rounds: int, per_round: int, dropped: int, mid_uploads: int, stalled: int
) -> DisconnectResult:
    """``rounds`` rounds of hang-ups while queued, ``mid_uploads`` hang-ups mid-body, ``stalled`` uploads
    that stop half-way; counts and leaks."""
    result = DisconnectResult(rounds, per_round, dropped, mid_upload=mid_uploads)
    start = service.metrics()
    one_round(service, body, result, 0)
    # Thread pools start their threads on first use: the baseline is taken once the first round is done.
    fds, threads, rss = service.open_fds(), service.threads(), service.rss_mib()
    for index in range(1, rounds):
        one_round(service, body, result, index)
    for index in range(mid_uploads):
        mid_upload(service, body, index)
    stalled_uploads(service, body, stalled, result)
    expected_hang_ups = rounds * dropped + mid_uploads
    _wait_for(lambda: _hung_up(service.metrics()) >= _hung_up(start) + expected_hang_ups)
    end = service.metrics()
    result.model_images = _model_images(end) - _model_images(start)
    result.expected_model_images = rounds * (per_round - dropped) + (1 if stalled else 0)  # + the one sent meanwhile
    result.counted_disconnects = _gone(end) - _gone(start)
    result.counted_mid_upload = _hung_up(end) - _hung_up(start) - result.counted_disconnects
    time.sleep(0.5)  # the server closes its side of the last connections
    result.fds = (fds, service.open_fds())
    result.threads = (threads, service.threads())
    result.rss_mib = (rss, service.rss_mib())
    return result
