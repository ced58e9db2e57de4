"""A real ``python -m app`` under test: started on a free loopback port, watched through ``/proc``, its
metrics and its JSON access log, and stopped by its own process id."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 300  # a first start exports the model to ONNX
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Service:
    """One server process; ``with Service.start(...) as s:`` kills it on the way out if it still runs."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(cls, model: Path, log_path: Path, *, launcher: Sequence[str] = ("-m", "app"), **env: str) -> Service:
        """Start ``python <launcher>`` on ``model`` with ``SERVE_*`` overrides; returns once it is ready."""
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")} | {
            "SERVE_MODEL_PATH": str(model),
            "SERVE_GRPC_PORT": "0",
            "SERVE_HOST": "127.0.0.1",
            "SERVE_PORT": str(port),
            "SERVE_LOG_FORMAT": "json",
            **env,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, *launcher], cwd=REPO, env=environ, stdout=log, stderr=log)
        service = cls(process, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not service.is_ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the server did not become ready (exit {process.poll()}); see {log_path}")
            time.sleep(0.1)
        return service

    def __enter__(self) -> Service:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        """Resident memory now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def open_fds(self) -> int:
        """File descriptors open now (sockets included)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def open_files(self) -> int:
        """File descriptors open now other than sockets: under load the sockets come and go with the
        connections in flight, the rest must not move."""
        folder = f"/proc/{self.pid}/fd"
        targets = []
        for name in os.listdir(folder):
            with contextlib.suppress(FileNotFoundError):  # closed between the listing and the read
                targets.append(os.readlink(f"{folder}/{name}"))
        return sum(not target.startswith("socket:") for target in targets)

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def metrics(self) -> Samples:
        """Every sample of ``/metrics``, keyed by name and sorted labels."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines, e.g. from native libraries, are skipped)."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def access_log(self) -> dict[str, dict[str, Any]]:
        """The access log's lines by request id."""
        return {r["request_id"]: r for r in self.log_records() if r.get("logger") == "app.access"}

    def tracebacks(self) -> list[str]:
        """Unexpected errors the server logged (each would have been a 500)."""
        return [r["message"] + "\n" + r["traceback"] for r in self.log_records() if "traceback" in r]

    def terminate(self) -> float:
        """Send SIGTERM; returns the monotonic time it was sent."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return sent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metric(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 when absent (counters start at 0)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
