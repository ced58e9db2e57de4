"""``SERVE_WORKERS`` > 1: several whole servers on one port, sharing the device.

Why: one process's interpreter lock bounds it well below a GPU. On an H200 one server stops near
1,100 img/s with the GPU at a fifth of its model-only limit, while four processes sharing the GPU
reach 3,000 (docs/benchmarks.md). Each worker is a complete server (HTTP, decoding, its own batcher
and copy of the model) started with ``spawn``, so no CUDA state is ever forked.

Each worker binds the port with SO_REUSEPORT and the kernel spreads new connections evenly over
them. The parent binds it first (without listening, so it takes no connections): a port already in
use fails at once with one message, and port 0 resolves once for all workers. Metrics use
prometheus_client's multiprocess mode, so every worker's ``/metrics`` shows the sum of all.

The parent forwards SIGTERM/SIGINT to the workers, which drain as a single server does; it replaces
a worker that dies, and stops everything when one cannot serve the model (exit 1, as ``python -m app``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from app.config import Settings

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXIT_CANNOT_SERVE = (1, 2)  # python -m app: the model cannot be loaded / the settings are bad
RESTART_PAUSE_S = 1.0  # between replacements of one worker, so a crash loop cannot spin


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` servers until a signal stops them; the exit code of ``python -m app``."""
    reserved = _reserve_port(settings.host, settings.port)
    port = reserved.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="serve-metrics-") as metrics_dir:
        os.environ[METRICS_DIR_ENV] = metrics_dir  # before any worker imports prometheus_client
        supervisor = _Supervisor(settings.workers, settings.host, port)
        try:
            return supervisor.run()
        finally:
            reserved.close()


def _reserve_port(host: str, port: int) -> socket.socket:
    try:
        return _bind_shared(host, port)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror}") from None


def _bind_shared(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that every worker binds as well (SO_REUSEPORT); not listening yet."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(self, count: int, host: str, port: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._count, self._host, self._port = count, host, port
        self._workers: dict[int, BaseProcess] = {}  # slot -> process
        self._started_at: dict[int, float] = {}
        self._stopping = False
        self._failed = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info("starting %d workers on %s:%d", self._count, self._host, self._port)
        for slot in range(self._count):
            self._start(slot)
        while self._workers:
            by_sentinel = {process.sentinel: slot for slot, process in self._workers.items()}
            for sentinel in wait(list(by_sentinel)):
                self._reap(by_sentinel[sentinel])  # type: ignore[index]
        return 1 if self._failed else 0

    def _start(self, slot: int) -> None:
        process = self._context.Process(
            target=run_worker, args=(self._host, self._port), name=f"serve-worker-{slot}", daemon=False
        )
        process.start()
        self._workers[slot] = process
        self._started_at[slot] = time.monotonic()

    def _reap(self, slot: int) -> None:
        from prometheus_client import multiprocess  # here: the metrics directory is set by now

        process = self._workers.pop(slot)
        process.join()
        code = process.exitcode
        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid)  # its live gauges leave the sums
        if self._stopping:
            self._failed |= code != 0
            return
        if code in EXIT_CANNOT_SERVE:
            log.error("worker %d exited with %s: it cannot serve; stopping every worker", process.pid, code)
            self._failed = True
            self._stop_all()
            return
        log.error("worker %d died (exit code %s); starting a replacement", process.pid, code)
        time.sleep(max(0.0, self._started_at[slot] + RESTART_PAUSE_S - time.monotonic()))
        self._start(slot)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # A second signal is forwarded too: each worker then stops at once instead of draining.
        self._stop_all(sig)

    def _stop_all(self, sig: int = signal.SIGTERM) -> None:
        self._stopping = True
        for process in self._workers.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, sig)


def run_worker(host: str, port: int) -> None:
    """A worker process: one whole server on the shared port (the target of each spawned process)."""
    # Its own process group: Ctrl-C in a terminal reaches the parent alone, which forwards one signal,
    # so the worker drains instead of seeing two signals and stopping at once.
    os.setpgrp()
    _exit_with_parent()
    from app.__main__ import serve  # here: app.__main__ imports this module

    sys.exit(serve(sockets=[_bind_shared(host, port)]))


def _exit_with_parent() -> None:
    """Drain and stop if the parent dies (killed outright, it can forward nothing)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
