"""The doors beside ``/predict`` tried as an attacker would, against a real server: the admin reload (who may
call it, what it may read) here, the Open Inference Protocol in ``oip_probes``.

Each probe returns what happened (status, time to the answer, the server's memory, the slowest
``/health/live`` meanwhile); the short suite asserts on them and the full runner reports them
(docs/reliability.md, "The doors").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.reliability.support.rawhttp import RawRequest, parse_response
from tests.reliability.support.service import Service

ADMIN_KEY = "doors-admin-key"
API_KEY = "doors-api-key"
JSON_TYPE = ("Content-Type", "application/json")
WRONG = ("Authorization", "Bearer not-the-key")
ADMIN = ("Authorization", f"Bearer {ADMIN_KEY}")
AUTH = [("Authorization", f"Bearer {API_KEY}")]
GRPC_AUTH = [("authorization", f"Bearer {API_KEY}")]
Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Probe:
    """One hostile request and what came of it."""

    name: str
    status: int | str  # the HTTP status, or the gRPC status code's name
    seconds: float  # from the request's head to the answer
    message: str = ""
    rss_growth_mib: float = 0.0
    health_worst_ms: float | None = None  # the slowest /health/live while it ran, when watched


@dataclass
class HealthWatch:
    """Times ``GET /health/live`` back to back, on a connection of its own, while a probe runs."""

    url: str
    worst_ms: float = 0.0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextlib.contextmanager
    def running(self) -> Iterator[HealthWatch]:
        thread = threading.Thread(target=self._watch, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            time.sleep(0.05)  # a last look once the probe is answered
            self._stop.set()
            thread.join(timeout=10)

    def _watch(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                client.get("/health/live").raise_for_status()
                self.worst_ms = max(self.worst_ms, 1000 * (time.perf_counter() - began))
                self.samples += 1
                time.sleep(0.005)


def watched(server: Service, name: str, send: Callable[[], tuple[int | str, str]]) -> Probe:
    """``send()`` (status, message) timed, with the server's memory growth and the health watch around it."""
    rss = server.rss_mib()
    with HealthWatch(server.url).running() as health:
        began = time.monotonic()
        status, message = send()
        seconds = time.monotonic() - began
    return Probe(name, status, seconds, message[:300], server.rss_mib() - rss, health.worst_ms)


def post(server: Service, target: str, headers: Headers, body: bytes = b"", source: str = "") -> tuple[int, str]:
    """One POST on a fresh connection (from the loopback address ``source``, when given): status, message."""
    parts = urlsplit(server.url)
    host = next((value for name, value in headers if name.lower() == "host"), parts.netloc)
    request = RawRequest(target=target, headers=[h for h in headers if h[0].lower() != "host"], body=body)
    with socket.create_connection((parts.hostname, parts.port), timeout=60, source_address=(source, 0)) as sock:
        sock.sendall(b"".join(request.pieces(host)))
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status, _, answer, _ = parse_response(raw)
    return status, error_message(answer)


def error_message(body: bytes) -> str:
    """The message of either error envelope (the API's, or the protocol's ``{"error": "..."}``)."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("latin-1")
    return str(error["message"] if isinstance(error, dict) else error)


# --- the admin door -----------------------------------------------------------------------------------------


def big_body_with_wrong_key(server: Service, body_mib: int = 256) -> Probe:
    """A wrong key, then a body of ``body_mib`` MiB poured as fast as the server takes it: the answer must come
    from the head alone (timed from the head) and the body must not be held."""
    parts = urlsplit(server.url)
    head = (
        f"POST /admin/reload HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer not-the-key\r\nContent-Length: {body_mib << 20}\r\n\r\n"
    ).encode()
    rss = server.rss_mib()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        began = time.monotonic()
        pouring = threading.Thread(target=_pour, args=(sock, body_mib), daemon=True)
        pouring.start()
        answer = _read_head(sock)
        seconds = time.monotonic() - began
        time.sleep(0.5)  # while the client still pours
        growth = server.rss_mib() - rss
        sock.shutdown(socket.SHUT_RDWR)
        pouring.join(timeout=30)
    status, _, body, _ = parse_response(answer)
    return Probe(f"wrong key, then a {body_mib} MiB body", status, seconds, error_message(body), growth)


def _pour(sock: socket.socket, body_mib: int) -> None:
    chunk = b" " * (1 << 20)
    with contextlib.suppress(OSError):  # the server closed the connection: the point
        for _ in range(body_mib):
            sock.sendall(chunk)


def _read_head(sock: socket.socket, timeout_s: float = 30) -> bytes:
    answer = b""
    deadline = time.monotonic() + timeout_s
    while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        answer += chunk
    return answer


def admin(server: Service, name: str, headers: Headers, body: bytes = b"", source: str = "") -> Probe:
    began = time.monotonic()
    status, message = post(server, "/admin/reload", headers, body, source)
    return Probe(name, status, time.monotonic() - began, message)


def keyless_admin_probes(server: Service) -> list[Probe]:
    """A server with no key at all: nobody reloads over HTTP, whatever the address, origin or host."""
    evil = ("Origin", "http://evil.example")
    return [
        admin(server, "no key configured, from 127.0.0.1", [JSON_TYPE], b"{}"),
        admin(server, "no key configured, from 127.0.0.6 (a sidecar's address)", [JSON_TYPE], b"{}", "127.0.0.6"),
        admin(server, "cross-site POST with no body", [evil]),
        admin(server, "cross-site form POST", [evil, ("Content-Type", "application/x-www-form-urlencoded")], b"a=b"),
        admin(server, "DNS rebinding (Host: evil.example)", [("Host", "evil.example"), JSON_TYPE], b"{}"),
    ]


def keyed_admin_probes(server: Service) -> list[Probe]:
    """A server with ``SERVE_ADMIN_KEY``: the key is checked from the head; the body is small and JSON."""
    return [
        admin(server, "wrong key, body '{'", [WRONG, JSON_TYPE], b"{"),
        admin(server, "no key sent, JSON body", [JSON_TYPE], b'{"path": "x"}'),
        admin(server, "the API key, not the admin key", [AUTH[0], JSON_TYPE], b"{}"),
        admin(server, "right key, text/plain body", [ADMIN, ("Content-Type", "text/plain")], b"{}"),
        admin(server, "right key, form body", [ADMIN, ("Content-Type", "application/x-www-form-urlencoded")], b"a=b"),
        admin(server, "right key, a body of 64 KiB + 1", [ADMIN, JSON_TYPE], b" " * (64 * 1024 + 1)),
        admin(server, "right key, body '{'", [ADMIN, JSON_TYPE], b"{"),
        admin(server, "right key, a 5,000-digit number", [ADMIN, JSON_TYPE], b'{"path": ' + b"9" * 5000 + b"}"),
        admin(server, "right key, an unknown field", [ADMIN, JSON_TYPE], b'{"file": "x"}'),
    ]


# --- what a reload may read -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFolder:
    """A doors server's model directory, with files planted in and around it."""

    folder: Path
    served: Path
    other: Path  # a second good checkpoint, inside
    fifo: Path

    @classmethod
    def build(cls, root: Path, checkpoint: Path, other_checkpoint: Path) -> ModelFolder:
        folder = root / "models"
        folder.mkdir(parents=True, exist_ok=True)
        served, other, outside = (
            folder / "model.safetensors",
            folder / "other.safetensors",
            root / "outside.safetensors",
        )
        for source, target in ((checkpoint, served), (other_checkpoint, other), (other_checkpoint, outside)):
            shutil.copyfile(source, target)
        fifo = folder / "fifo.safetensors"
        if not fifo.exists():
            os.mkfifo(fifo)
        escape = folder / "escape.safetensors"
        escape.unlink(missing_ok=True)
        escape.symlink_to(outside)
        with (folder / "huge.safetensors").open("wb") as big:  # past SERVE_MAX_MODEL_BYTES (``env``)
            big.write(served.read_bytes())
            big.truncate(served.stat().st_size + (8 << 20))
        return cls(folder, served, other, fifo)

    def env(self) -> dict[str, str]:
        limit = self.served.stat().st_size + (1 << 20)
        return {
            "SERVE_MODEL_PATH": str(self.served),
            "SERVE_MAX_MODEL_BYTES": str(limit),
            "SERVE_ADMIN_KEY": ADMIN_KEY,
            "SERVE_API_KEY": API_KEY,
        }


REFUSED_PATHS = {
    "/dev/zero": "/dev/zero",
    "a FIFO in the folder": "fifo.safetensors",
    "a symlink out of the folder": "escape.safetensors",
    "a file over SERVE_MAX_MODEL_BYTES": "huge.safetensors",
    "/etc/shadow": "/etc/shadow",
    "a missing file outside": "/nonexistent/model.safetensors",
    "../ out of the folder": "../outside.safetensors",
    "the folder itself": ".",
    "a NUL byte": "model\u0000.safetensors",
}


def reload_path_probes(server: Service, folder: ModelFolder) -> list[Probe]:
    """Paths a reload must refuse within a second, reading nothing; then one it must serve."""
    probes = []
    for name, path in {**REFUSED_PATHS, "a checkpoint in the folder": folder.other.name}.items():
        body = json.dumps({"path": path}).encode()
        probes.append(watched(server, name, lambda body=body: post(server, "/admin/reload", [ADMIN, JSON_TYPE], body)))
    return probes


def fifo_has_no_reader(fifo: Path) -> bool:
    """Whether nobody holds ``fifo`` open for reading (a writer's non-blocking open then fails with ENXIO)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return True
    os.close(fd)
    return False
