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

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from app.config import Settings
from app.engine.backends import Runtime
from app.engine.watch import file_identity, watch_file
from app.errors import ReloadInProgress
from app.process.logs import configure_logging
from app.process.rollout import Peers, Roller, error_answer
from app.process.server import serve

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXIT_CANNOT_SERVE = (1, 2)  # python -m app: the model cannot be loaded / the settings are bad
RESTART_PAUSE_S = 1.0  # between replacements of one worker, so a crash loop cannot spin


def supervise(settings: Settings, runtime: Runtime) -> int:
    """Run ``settings.workers`` servers until a signal stops them; the exit code of ``python -m app``."""
    reserved = _reserve_port(settings.host, settings.port)
    port = reserved.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="serve-metrics-") as metrics_dir:
        os.environ[METRICS_DIR_ENV] = metrics_dir  # before any worker imports prometheus_client
        supervisor = _Supervisor(settings, runtime, port)
        try:
            return supervisor.run()
        finally:
            reserved.close()


def _reserve_port(host: str, port: int) -> socket.socket:
    try:
        if port:  # SO_REUSEPORT would also share the port with another server already on it: look first
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, never a listener
                probe.bind((host, port))
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
    def __init__(self, settings: Settings, runtime: Runtime, port: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        # The supervisor watches the model file for all workers (rolling); workers never watch themselves.
        self._settings = settings.model_copy(update={"watch_model": False})
        self._runtime, self._watch = runtime, settings.watch_model
        self._model_path = settings.model_path  # SERVE_MODEL_PATH: what a reload without a path reads
        self._count, self._host, self._port = settings.workers, settings.host, port
        self._workers: dict[int, BaseProcess] = {}  # slot -> process
        self._links: dict[int, Connection] = {}  # slot -> the supervisor's end of its control pipe
        self._ready = self._context.Array("b", settings.workers, lock=False)  # slot -> 1 while that worker is ready
        self._started_at: dict[int, float] = {}
        self._roller = Roller()
        self._wake_reader, self._wake_writer = socket.socketpair()  # SIGHUP and the watcher ask for a rollout
        self._stopping = False
        self._failed = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, lambda *_: self._wake_writer.send(b"r"))
        if self._watch:
            threading.Thread(target=self._watch_model, name="watch", daemon=True).start()
        log.info("starting %d workers on %s:%d", self._count, self._host, self._port)
        for slot in range(self._count):
            self._start(slot)
        while self._workers:
            by_sentinel = {process.sentinel: slot for slot, process in self._workers.items()}
            by_link = {conn: slot for slot, conn in self._links.items()}
            for ready in wait([*by_sentinel, *by_link, self._wake_reader]):
                self._dispatch(ready, by_sentinel, by_link)
        return 1 if self._failed else 0

    def _dispatch(self, ready: object, by_sentinel: dict[int, int], by_link: dict[Connection, int]) -> None:
        """Act on one thing ``wait`` found ready; what an earlier one in the same round replaced is skipped."""
        if ready is self._wake_reader:
            self._wake_reader.recv(64)
            self._rollout(None)
        elif isinstance(ready, Connection):
            slot = by_link[ready]
            if self._links.get(slot) is ready:
                self._on_message(slot)
        elif isinstance(ready, int):
            slot = by_sentinel[ready]
            if slot in self._workers and self._workers[slot].sentinel == ready:
                self._reap(slot)

    def _start(self, slot: int) -> None:
        link, worker_end = self._context.Pipe()
        process = self._context.Process(
            target=run_worker,
            args=(self._settings, self._runtime, self._port, Peers(worker_end, self._ready, slot)),
            name=f"serve-worker-{slot}",
            daemon=False,
        )
        process.start()
        worker_end.close()
        self._workers[slot], self._links[slot] = process, link
        self._started_at[slot] = time.monotonic()

    def _on_message(self, slot: int) -> None:
        """A worker asked for a rollout (its admin endpoint); answer it when every worker has reloaded."""
        conn = self._links[slot]
        try:
            kind, path, sent_at = conn.recv()
        except (EOFError, OSError, ValueError):
            return  # a worker gone: its sentinel says so too
        if kind != "rollout":
            return
        if self._roller.overlaps(sent_at):
            answer = error_answer(ReloadInProgress("a reload is in progress; try again once it has finished"))
        else:
            answer = self._rollout(path)
        with contextlib.suppress(OSError):
            conn.send(("rolled", answer))

    def _rollout(self, requested: str | None) -> dict[str, object]:
        """Reload every live worker in turn (each resolves ``requested`` itself: a name from the network, or
        None for SERVE_MODEL_PATH); new workers then start on the new model."""
        shown = requested or str(self._model_path)
        workers = [(p.pid or 0, self._links[s]) for s, p in sorted(self._workers.items()) if p.is_alive()]
        answer = self._roller.roll(requested, workers)
        if answer.get("error"):
            log.error("rolling reload of %s stopped: %s", shown, answer["error"]["message"])
        else:
            # A replacement worker starts on the model the others now serve (the file they resolved).
            self._settings = self._settings.model_copy(update={"model_path": Path(answer.pop("path"))})
            log.info("rolling reload of %s done on %d workers", shown, len(workers))
        return answer

    def _watch_model(self) -> None:
        """The project's one watch loop (app/engine/watch.py), on this thread: each new file asks for a rollout."""

        async def ask_for_rollout() -> bool:
            self._wake_writer.send(b"w")
            return True

        asyncio.run(watch_file(self._model_path, file_identity(self._model_path), ask_for_rollout))

    def _reap(self, slot: int) -> None:
        from prometheus_client import multiprocess  # here: the metrics directory is set by now

        process = self._workers.pop(slot)
        self._links.pop(slot).close()
        self._ready[slot] = 0  # its replacement is not ready until it says so
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


def run_worker(settings: Settings, runtime: Runtime, port: int, peers: Peers) -> None:
    """A worker process: one whole server on the shared port (the target of each spawned process), with
    the settings and runtime its parent has already checked and resolved."""
    # Its own process group: Ctrl-C in a terminal reaches the parent alone, which forwards one signal,
    # so the worker drains instead of seeing two signals and stopping at once.
    os.setpgrp()
    _exit_with_parent()
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(serve(settings, runtime, sockets=[_bind_shared(settings.host, port)], peers=peers))


def _exit_with_parent() -> None:
    """Drain and stop if the parent dies (killed outright, it can forward nothing)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
