"""``SERVE_WORKERS``: several real ``python -m app`` processes on one port, as users run them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import REPO, RunningServer, free_port
from tests.conftest import encode, photo

WORKERS = {
    "SERVE_WORKERS": "2",
    "SERVE_BACKEND": "torch",
    "SERVE_DEVICE": "cpu",
    "SERVE_DECODE_THREADS": "1",
    "SERVE_GRPC_PORT": "0",
}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one ``/metrics`` scrape (a fresh connection, so any worker may answer it)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def predictions_counted(url: str) -> float:
    return scrape(url).get(("inference_requests_total", (("code", "200"), ("route", "/predict"))), 0.0)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def all_ready(url: str) -> bool:
    return scrape(url).get(("inference_ready", ()), 0.0) == 2.0  # summed over the workers


def log_records(server: RunningServer) -> list[dict[str, object]]:
    records = []
    for line in server.log().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def worker_pids(server: RunningServer) -> list[int]:
    """The pids that logged "ready", in order (a replaced worker adds one)."""
    return [int(str(r["pid"])) for r in log_records(server) if r.get("message") == "ready"]


def post_photo(url: str, body: bytes) -> int:
    with httpx.Client(timeout=60) as client:  # one connection per request: the kernel spreads them
        return client.post(f"{url}/predict", content=body, headers={"content-type": "image/jpeg"}).status_code


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_workers_share_the_port_and_every_scrape_shows_their_sum(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(**WORKERS)
    wait_until(lambda: all_ready(server.url), "both workers to be ready")
    body = encode(photo("chelsea"), "JPEG")
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: post_photo(server.url, body), range(24)))
    assert codes == [200] * 24
    assert [predictions_counted(server.url) for _ in range(6)] == [24.0] * 6
    served_by = {r["pid"] for r in log_records(server) if r.get("route") == "/predict"}
    assert len(served_by) == 2, served_by


def test_sigterm_drains_every_worker_and_exits_0(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(**WORKERS)
    wait_until(lambda: all_ready(server.url), "both workers to be ready")
    pids = worker_pids(server)
    body = encode(photo("coffee"), "JPEG")
    signalled = threading.Event()
    signal_time = [float("inf")]

    def client() -> list[tuple[float, int | None]]:
        """(start time, status or None for a closed connection) of each request, until the server stops."""
        outcomes: list[tuple[float, int | None]] = []
        with httpx.Client(timeout=60) as http:
            while not outcomes or (outcomes[-1][1] == 200 and not signalled.is_set()):
                started = time.monotonic()
                try:
                    response = http.post(f"{server.url}/predict", content=body, headers={"content-type": "image/jpeg"})
                    outcomes.append((started, response.status_code))
                except httpx.TransportError:
                    outcomes.append((started, None))
        return outcomes

    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(client) for _ in range(6)]
        time.sleep(1.0)
        signal_time[0] = time.monotonic()
        server.terminate()
        signalled.set()
        outcomes = [o for job in pending for o in job.result()]
    assert server.process.wait(timeout=60) == 0, server.log()
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    # Requests sent well before the signal were admitted and answered: 200, or 503 once draining.
    # One sent as the workers stop may find its connection closed, as with a single server.
    settled = [code for started, code in outcomes if started < signal_time[0] - 0.1]
    assert settled.count(200) >= 6 and set(settled) <= {200, 503}, outcomes


def test_a_dead_worker_is_replaced_and_a_killed_parent_takes_its_workers_along(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(**WORKERS)
    wait_until(lambda: all_ready(server.url), "both workers to be ready")
    body = encode(photo("rocket"), "JPEG")
    assert post_photo(server.url, body) == 200
    first, second = worker_pids(server)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(server)) == 3, "a replacement worker")
    wait_until(lambda: all_ready(server.url), "the replacement to be ready")
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: post_photo(server.url, body), range(8))) == [200] * 8
    assert predictions_counted(server.url) == 9.0  # the dead worker's count is kept, not lost
    replacement = worker_pids(server)[-1]
    assert replacement not in (first, second)

    server.process.kill()  # no signal to forward: the workers notice on their own
    server.process.wait(timeout=10)
    wait_until(lambda: not alive(second) and not alive(replacement), "the orphaned workers to exit", 60)


def probe(url: str) -> tuple[int, str]:
    """A readiness probe on a fresh connection (any worker may answer); 0 when the connection fails, as one
    queued to the killed worker's socket does."""
    try:
        answer = httpx.get(f"{url}/health/ready", timeout=10)
    except httpx.TransportError as exc:
        return 0, repr(exc)
    return answer.status_code, answer.text


def test_the_pod_is_ready_only_when_every_worker_is(server_factory: Callable[..., RunningServer]) -> None:
    """While a replacement worker loads, every probe says 503, whichever worker answers it."""
    server = server_factory(**WORKERS)
    wait_until(lambda: all_ready(server.url), "both workers to be ready")
    assert probe(server.url)[0] == 200
    first, _ = worker_pids(server)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: probe(server.url)[0] == 503, "a live worker's probe to notice the dead one", 10)
    seen = []
    while (answer := probe(server.url))[0] != 200:
        seen.append(answer)
        time.sleep(0.05)
    assert len(worker_pids(server)) == 3  # ready again only once the replacement said so
    assert all_ready(server.url)
    assert all(status in (503, 0) for status, _ in seen)
    assert any("another worker process is still loading the model" in text for _, text in seen), seen[:3]


def test_a_model_that_cannot_load_stops_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, **WORKERS, "SERVE_MODEL_PATH": str(tmp_path / "missing.safetensors")}
    env |= {"SERVE_HOST": "127.0.0.1", "SERVE_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-m", "app"], cwd=REPO, env=env, capture_output=True, timeout=120)
    assert done.returncode == 1
    assert b"cannot serve; stopping every worker" in done.stderr


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "so_reuseport"])
def test_a_port_in_use_is_refused_at_once(tiny_checkpoint: Path, shared: bool) -> None:
    """Also when the server already there shares its port (as another ``SERVE_WORKERS`` server does):
    SO_REUSEPORT must not split the traffic between two servers."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(shared))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **WORKERS, "SERVE_MODEL_PATH": str(tiny_checkpoint)}
        env |= {"SERVE_HOST": "127.0.0.1", "SERVE_PORT": str(port)}
        done = subprocess.run([sys.executable, "-m", "app"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}".encode() in done.stderr
