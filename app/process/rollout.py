"""Rolling reloads across ``SERVE_WORKERS`` processes: one worker at a time, so capacity never drops.

Each worker has a control pipe to the supervisor. A reload asked of any worker (``POST /admin/reload``), a
``SIGHUP`` to the supervisor, or a new file at ``SERVE_MODEL_PATH`` under ``SERVE_WATCH_MODEL`` makes the
supervisor ask each worker in turn to reload and wait for its answer before the next; every worker keeps
serving its old model until its new one is warm. The first failure stops the rollout (the workers not yet
reached keep the old model) and is the answer. A request for a rollout while one is under way gets 409.

Messages are tuples: worker -> supervisor ``("rollout", path | None, sent_at)`` and ``("reloaded", answer)``;
supervisor -> worker ``("reload", path | None)`` and ``("rolled", answer)``. Answers are dicts: a reload's
outcome (``ReloadOutcome.to_dict``) or ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, MutableSequence, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

from app.engine.client import ReloadOutcome
from app.errors import InvalidModel, NotReady, ReloadInProgress, ServiceError

log = logging.getLogger(__name__)
Answer = dict[str, Any]


def error_answer(error: ServiceError) -> Answer:
    return {"error": {"code": error.code, "message": error.message}}


def raise_for(answer: Answer) -> Answer:
    """``answer`` itself, or the ``ServiceError`` it carries raised."""
    error = answer.get("error")
    if error is None:
        return answer
    kinds = {kind.code: kind for kind in (InvalidModel, ReloadInProgress, NotReady)}
    raise kinds.get(error["code"], InvalidModel)(error["message"])


@dataclass(frozen=True)
class Peers:
    """What a worker shares with the supervisor: its control pipe, and every worker's ready flag. As the door's
    ``Group`` (app/front/door.py) it reports this worker's readiness and reads everyone's."""

    control: Connection
    ready: Sequence[int]  # a shared array: slot -> 1 while that worker is ready
    slot: int

    def all_ready(self) -> bool:
        return all(self.ready)

    def report(self, ready: bool) -> None:
        cast(MutableSequence[int], self.ready)[self.slot] = int(ready)

    def control_for(self, reload: Reload) -> WorkerControl:
        """This worker's end of the control pipe, reloading its own engine with ``reload``."""
        return WorkerControl(self.control, reload)


Reload = Callable[[str | None], Coroutine[Any, Any, ReloadOutcome]]


class WorkerControl:
    """A worker's end of its control pipe: carries out the supervisor's reloads, and asks it for rollouts."""

    def __init__(self, conn: Connection, reload: Reload) -> None:
        self._conn, self._reload_model = conn, reload
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Future[Answer] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin taking the supervisor's messages (on a thread; ``loop`` runs the service)."""
        self._loop = loop
        threading.Thread(target=self._listen, name="control", daemon=True).start()

    async def rollout(self, path: str | None) -> Answer:
        """Ask the supervisor to reload every worker; its answer, or the error that stopped it raised."""
        assert self._loop is not None
        if self._pending is not None and not self._pending.done():
            raise ReloadInProgress("a reload is in progress; try again once it has finished")
        self._pending = self._loop.create_future()
        self._send(("rollout", path, time.monotonic()))
        return raise_for(await self._pending)

    def _listen(self) -> None:
        while True:
            try:
                kind, payload = self._conn.recv()[:2]
            except (EOFError, OSError):
                return  # the supervisor is gone; the worker exits with it (app/process/workers.py)
            if kind == "reload":
                self._send(("reloaded", self._reload(payload)))
            elif kind == "rolled" and self._loop is not None and self._pending is not None:
                self._loop.call_soon_threadsafe(_resolve, self._pending, payload)

    def _reload(self, path: str | None) -> Answer:
        assert self._loop is not None
        reloading = asyncio.run_coroutine_threadsafe(self._reload_model(path), self._loop)
        try:
            return reloading.result().to_dict()
        except ServiceError as exc:
            return error_answer(exc)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send(message)


def _resolve(future: asyncio.Future[Answer], answer: Answer) -> None:
    if not future.done():
        future.set_result(answer)


class Roller:
    """The supervisor's side: reloads the workers one after the other and sums up their answers."""

    def __init__(self) -> None:
        self._started = self._finished = 0.0

    def overlaps(self, sent_at: float) -> bool:
        """Whether a request sent at ``sent_at`` (time.monotonic, the same clock in every process) was asked
        while the last rollout ran: it is answered 409, as a second reload in one server is."""
        return self._started <= sent_at <= self._finished

    def roll(self, path: str | None, workers: list[tuple[int, Connection]]) -> Answer:
        """Reload each of ``workers`` (pid, control pipe) with ``path``, in order, stopping at the first failure;
        the answer's ``path`` is the file they loaded."""
        self._started = time.monotonic()
        first: Answer | None = None
        last: Answer | None = None
        results: list[Answer] = []
        for pid, conn in workers:
            if results and results[-1]["result"] != "ok":
                results.append({"pid": pid, "result": "skipped"})
                continue
            answer = self._ask(conn, path)
            if answer.get("error"):
                error = answer["error"]
                results.append({"pid": pid, "result": "failed", "error": error["message"], "code": error["code"]})
                continue
            first, last = first or answer, answer
            results.append({"pid": pid, "result": "ok", "version": answer["current"]["version"]})
        self._finished = time.monotonic()
        failed = next((r for r in results if r["result"] == "failed"), None)
        if failed is not None or first is None or last is None:
            code, message = (failed["code"], failed["error"]) if failed else ("invalid_model", "no worker to reload")
            return {"error": {"code": code, "message": message}, "workers": results}
        took_ms = round(1000 * (self._finished - self._started), 1)
        return {
            "previous": first["previous"],
            "current": last["current"],
            "took_ms": took_ms,
            "workers": results,
            "path": last["path"],
        }

    @staticmethod
    def _ask(conn: Connection, path: str | None) -> Answer:
        busy = error_answer(ReloadInProgress("a reload is in progress; try again once it has finished"))
        try:
            conn.send(("reload", path))
            while True:
                message = conn.recv()
                if message[0] == "reloaded":
                    answer: Answer = message[1]
                    return answer
                if message[0] == "rollout":  # this worker asked for one meanwhile
                    conn.send(("rolled", busy))
        except (EOFError, OSError):
            return {"error": {"code": "invalid_model", "message": "the worker exited during the reload"}}
