"""Dynamic batching, in two pieces: collecting a batch until it is full or a deadline passes, and running it.

The HTTP side awaits a future per item; the compute side resolves it. Batches run on dedicated
threads, at most ``capacity.batches_in_flight`` at once (1 by default: the model is never called
concurrently; a CUDA backend takes 2 so one batch's upload overlaps the previous one's compute), and the next
batch is collected while the current one runs, so the model never waits for a batch to fill when
work is queued.
This module knows nothing of HTTP, torch or metrics: it takes a ``predict_batch(list) -> list``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.capacity import Capacity

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """The queue and the next batch are full: shed load now rather than wait."""


class BatcherClosed(Exception):
    """The batcher is stopping and takes no new work."""


class DeadlineExceeded(Exception):
    """The item's deadline passed before it was served; expired items never reach the model."""


class BatchSizeMismatch(RuntimeError):
    """``predict_batch`` returned a different number of outputs than it was given inputs."""


@dataclass(frozen=True)
class Outcome(Generic[Out]):
    """One item's result and how it was served (seconds)."""

    value: Out
    batch_size: int
    queue_s: float
    run_s: float


@dataclass(eq=False)
class _Pending(Generic[In, Out]):
    item: In
    deadline: float
    enqueued: float
    future: asyncio.Future[Outcome[Out]]


class DynamicBatcher(Generic[In, Out]):
    """Groups concurrently submitted items into batches for ``predict_batch``."""

    def __init__(
        self,
        predict_batch: Callable[[list[In]], Sequence[Out]],
        *,
        capacity: Capacity,
        max_batch_delay_s: float,
    ) -> None:
        if max_batch_delay_s < 0:
            raise ValueError(f"max_batch_delay_s must be at least 0, got {max_batch_delay_s}")
        self._predict_batch = predict_batch
        self._max_batch_size = capacity.max_batch_size
        self._max_delay_s = max_batch_delay_s
        self._room = capacity.waiting
        self._items: deque[_Pending[In, Out]] = deque()
        self._collected = 0  # items taken into the next batch, which is not running yet
        self._arrived = asyncio.Event()
        self._max_in_flight = capacity.batches_in_flight
        self._executor = ThreadPoolExecutor(max_workers=self._max_in_flight, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Items waiting for the model: queued, or taken into the next batch, which has not started yet."""
        return len(self._items) + self._collected

    def start(self) -> None:
        """Begin collecting and running batches on the running event loop."""
        self._task = asyncio.create_task(self._serve(), name="batcher")

    async def stop(self) -> None:
        """Refuse new items, finish every queued one, then release the model thread."""
        self._closed = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def submit_nowait(self, items: Sequence[In], deadline: float) -> list[asyncio.Future[Outcome[Out]]]:
        """Queue all of ``items`` or none of them; ``deadline`` is on the ``time.monotonic`` clock."""
        if self._closed:
            raise BatcherClosed("the batcher is stopping")
        # Room for the queue and the next batch, whether the collector has already taken that batch's items
        # out of the queue or has not run since they arrived (as under CPU contention): either way the
        # same requests fit, which is what admission at the door promises (app/capacity.py).
        waiting = len(self._items) + self._collected
        if waiting + len(items) > self._room:
            raise QueueFull(f"{waiting} images wait for the model, at most {self._room} (the queue and the next batch)")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        pending = [_Pending(item, deadline, now, loop.create_future()) for item in items]
        self._items.extend(pending)
        self._arrived.set()
        return [p.future for p in pending]

    async def submit(self, items: Sequence[In], deadline: float) -> list[Outcome[Out]]:
        """Queue ``items`` and wait for their results, raising ``DeadlineExceeded`` past ``deadline``."""
        futures = self.submit_nowait(items, deadline)
        try:
            # On timeout, or when the caller is cancelled (its client went away), the futures are cancelled
            # and the collector skips them. Not wait_for: on Python 3.11 a cancelled wait_for leaves the
            # gather's CancelledError unretrieved, logged as an error for every cancelled request.
            async with asyncio.timeout(deadline - time.monotonic()):
                return await asyncio.gather(*futures)
        except TimeoutError:
            raise DeadlineExceeded("the request was not served before its deadline") from None

    async def _serve(self) -> None:
        running: set[asyncio.Task[None]] = set()
        while batch := await self._collect():
            if len(running) >= self._max_in_flight:
                _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                self._top_up(batch)  # what arrived while the model was busy joins this batch
            running.add(asyncio.create_task(self._run(batch)))
            self._collected = 0
        await asyncio.gather(*running)

    async def _collect(self) -> list[_Pending[In, Out]]:
        """Wait for a first item, then fill the batch until it is full or the batch delay has passed."""
        first = None
        while first is None:
            first = self._take()
            if first is None:
                if self._closed:
                    return []
                self._arrived.clear()
                await self._arrived.wait()
        batch = [first]
        fill_until = time.monotonic() + self._max_delay_s
        while len(batch) < self._max_batch_size:
            self._top_up(batch)
            remaining = fill_until - time.monotonic()
            if len(batch) == self._max_batch_size or remaining <= 0 or self._closed:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return batch

    def _top_up(self, batch: list[_Pending[In, Out]]) -> None:
        while len(batch) < self._max_batch_size and (item := self._take()) is not None:
            batch.append(item)

    def _take(self) -> _Pending[In, Out] | None:
        """Pop the next item still worth running; abandoned and expired ones are dropped here."""
        now = time.monotonic()
        while self._items:
            live = _drop_expired([self._items.popleft()], now)  # also skips items whose caller gave up
            if live:
                self._collected += 1
                return live[0]
        return None

    async def _run(self, batch: list[_Pending[In, Out]]) -> None:
        """Run one batch on the model thread; resolve every future, with the results or the error."""
        started = time.monotonic()
        live = _drop_expired(batch, started)
        if not live:
            return
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict_batch, [p.item for p in live])
            if len(outputs) != len(live):
                raise BatchSizeMismatch(f"predict_batch returned {len(outputs)} outputs for {len(live)} inputs")
        except Exception as exc:
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        run_s = time.monotonic() - started
        for item, value in zip(live, outputs, strict=True):
            if not item.future.done():
                item.future.set_result(Outcome(value, len(live), started - item.enqueued, run_s))


def _drop_expired(batch: list[_Pending[In, Out]], now: float) -> list[_Pending[In, Out]]:
    """The items still worth running; expired ones are answered with ``DeadlineExceeded`` here."""
    live = []
    for item in batch:
        if item.future.done():
            continue
        if item.deadline <= now:
            item.future.set_exception(DeadlineExceeded("the request expired while queued"))
        else:
            live.append(item)
    return live
