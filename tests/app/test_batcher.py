"""The batcher with fake models: collection, failure and mismatch, lifecycle and overload.

No test sleeps: items are queued before the batcher starts, or a fake model blocks on an event
until the test releases it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.capacity import Capacity
from app.engine.batcher import BatcherClosed, BatchSizeMismatch, DeadlineExceeded, DynamicBatcher, Outcome, QueueFull

pytestmark = pytest.mark.anyio
LATER = 3600.0  # a deadline nobody reaches in a test


class RecordingModel:
    """Multiplies by 10 and records every batch it was given; ``gate`` can hold a batch."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not hold_first:
            self.gate.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        self.gate.wait(timeout=30)
        return [10 * item for item in items]


def make_batcher(model: object, **overrides: float) -> DynamicBatcher[int, int]:
    options = {"max_batch_size": 2, "max_batch_delay_s": 0.0, "max_queue_size": 16, "max_in_flight": 1} | overrides
    capacity = Capacity(
        max_batch_size=int(options["max_batch_size"]),
        max_queue_size=int(options["max_queue_size"]),
        batches_in_flight=int(options["max_in_flight"]),
    )
    return DynamicBatcher(
        model,  # type: ignore[arg-type]
        capacity=capacity,
        max_batch_delay_s=options["max_batch_delay_s"],
    )


def deadline(seconds: float = LATER) -> float:
    return time.monotonic() + seconds


async def wait_until_entered(model: RecordingModel) -> None:
    await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 30)


# --- collection ---


async def test_queued_items_are_split_into_full_batches_in_order() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=2)
    futures = batcher.submit_nowait([0, 1, 2, 3, 4], deadline())
    batcher.start()
    outcomes = [await f for f in futures]
    await batcher.stop()
    assert model.batches == [[0, 1], [2, 3], [4]]
    assert [o.value for o in outcomes] == [0, 10, 20, 30, 40]
    assert [o.batch_size for o in outcomes] == [2, 2, 2, 2, 1]


async def test_a_lone_item_is_served_once_the_delay_passes() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=8, max_batch_delay_s=0.02)
    batcher.start()
    started = time.monotonic()
    (outcome,) = await batcher.submit([7], deadline())
    waited = time.monotonic() - started
    await batcher.stop()
    assert outcome == Outcome(value=70, batch_size=1, queue_s=outcome.queue_s, run_s=outcome.run_s)
    assert 0.02 <= outcome.queue_s < 5
    assert waited >= 0.02
    assert model.batches == [[7]]


async def test_items_arriving_while_a_batch_runs_form_the_next_batch() -> None:
    model = RecordingModel(hold_first=True)
    batcher = make_batcher(model, max_batch_size=4)
    batcher.start()
    first = batcher.submit_nowait([1], deadline())
    await wait_until_entered(model)
    rest = batcher.submit_nowait([2, 3, 4], deadline())
    model.gate.set()
    values = [(await f).value for f in first + rest]
    await batcher.stop()
    assert model.batches == [[1], [2, 3, 4]]
    assert values == [10, 20, 30, 40]


# --- failure and mismatch ---


async def test_a_failing_batch_fails_only_its_own_items() -> None:
    def model(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("bad batch")
        return [item + 1 for item in items]

    batcher = make_batcher(model, max_batch_size=2)
    futures = batcher.submit_nowait([13, 1, 2, 3], deadline())
    batcher.start()
    results = await asyncio.gather(*futures, return_exceptions=True)
    await batcher.stop()
    assert [type(r) for r in results[:2]] == [ValueError, ValueError]
    assert [r.value for r in results[2:] if isinstance(r, Outcome)] == [3, 4]


async def test_a_wrong_number_of_outputs_fails_the_batch() -> None:
    def model(items: list[int]) -> list[int]:
        return items[:-1] if len(items) == 2 else items

    batcher = make_batcher(model, max_batch_size=2)
    futures = batcher.submit_nowait([1, 2, 3], deadline())
    batcher.start()
    results = await asyncio.gather(*futures, return_exceptions=True)
    await batcher.stop()
    assert isinstance(results[0], BatchSizeMismatch) and isinstance(results[1], BatchSizeMismatch)
    assert "1 outputs for 2 inputs" in str(results[0])
    assert isinstance(results[2], Outcome) and results[2].value == 3


async def test_expired_and_abandoned_items_never_reach_the_model() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=4)
    (expired,) = batcher.submit_nowait([1], time.monotonic() - 1)
    (abandoned,) = batcher.submit_nowait([2], deadline())
    (kept,) = batcher.submit_nowait([3], deadline())
    abandoned.cancel()
    batcher.start()
    assert (await kept).value == 30
    with pytest.raises(DeadlineExceeded):
        await expired
    await batcher.stop()
    assert model.batches == [[3]]


async def test_a_caller_past_its_deadline_gets_deadline_exceeded_and_its_item_is_dropped() -> None:
    model = RecordingModel(hold_first=True)
    batcher = make_batcher(model, max_batch_size=4)
    batcher.start()
    first = batcher.submit_nowait([1], deadline())
    await wait_until_entered(model)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit([2], deadline(0.05))
    model.gate.set()
    await first[0]
    await batcher.stop()
    assert model.batches == [[1]]


# --- lifecycle and overload ---


async def test_a_full_queue_refuses_at_once_and_all_or_nothing() -> None:
    # Room for the queue (3) and the next batch (2), before the collector has taken any of them.
    batcher = make_batcher(RecordingModel(), max_queue_size=3, max_batch_size=2)
    batcher.submit_nowait([1, 2, 3], deadline())
    with pytest.raises(QueueFull):
        batcher.submit_nowait([4, 5, 6], deadline())
    assert batcher.depth == 3
    batcher.submit_nowait([4, 5], deadline())
    with pytest.raises(QueueFull):
        batcher.submit_nowait([6], deadline())
    assert batcher.depth == 5
    batcher.start()
    await batcher.stop()
    assert batcher.depth == 0


async def test_the_room_is_the_same_whether_or_not_the_next_batch_was_collected() -> None:
    model = RecordingModel(hold_first=True)
    batcher = make_batcher(model, max_queue_size=1, max_batch_size=1)
    batcher.start()
    running = batcher.submit_nowait([1], deadline())
    await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 5)
    # The model is busy and, with no await between these calls, the collector has not taken 2 as the next
    # batch yet: 3 must fit all the same, as it would once 2 is taken.
    batcher.submit_nowait([2], deadline())
    batcher.submit_nowait([3], deadline())
    with pytest.raises(QueueFull):
        batcher.submit_nowait([4], deadline())
    model.gate.set()
    await running[0]
    await batcher.stop()
    assert model.batches == [[1], [2], [3]]


async def test_the_depth_counts_the_batch_being_collected_and_not_the_running_one() -> None:
    model = RecordingModel(hold_first=True)
    batcher = make_batcher(model, max_batch_size=4, max_batch_delay_s=LATER)
    batcher.start()
    running = batcher.submit_nowait([1, 2, 3, 4], deadline())  # a full batch: it goes at once
    await wait_until_entered(model)
    assert batcher.depth == 0
    waiting = batcher.submit_nowait([5, 6], deadline())
    for _ in range(10):  # the collector takes them into the next batch, which waits for a fuller one
        await asyncio.sleep(0)
    assert len(batcher._items) == 0 and batcher.depth == 2
    model.gate.set()
    await batcher.stop()
    assert [f.done() for f in running + waiting] == [True] * 6 and batcher.depth == 0
    assert model.batches == [[1, 2, 3, 4], [5, 6]]


async def test_stop_finishes_queued_items_then_refuses_new_ones() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=2)
    futures = batcher.submit_nowait([1, 2, 3], deadline())
    batcher.start()
    await batcher.stop()
    assert [f.result().value for f in futures] == [10, 20, 30]
    with pytest.raises(BatcherClosed):
        batcher.submit_nowait([4], deadline())
    assert model.batches == [[1, 2], [3]]


async def test_the_model_runs_on_one_thread_that_is_not_the_event_loop() -> None:
    threads: set[int] = set()

    def model(items: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        return items

    batcher = make_batcher(model, max_batch_size=1)
    futures = batcher.submit_nowait([1, 2, 3], deadline())
    batcher.start()
    await asyncio.gather(*futures)
    await batcher.stop()
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_two_batches_in_flight_run_concurrently_and_a_third_waits() -> None:
    entered: list[list[int]] = []
    both_in = threading.Event()
    two_running = threading.Barrier(2, timeout=30)  # breaks (and fails the batch) unless both run at once
    release = threading.Event()

    def model(items: list[int]) -> list[int]:
        entered.append(list(items))
        if len(entered) <= 2:
            two_running.wait()
            both_in.set()
            release.wait(timeout=30)
        return [10 * item for item in items]

    batcher = make_batcher(model, max_batch_size=1, max_in_flight=2)
    futures = batcher.submit_nowait([1, 2, 3], deadline())
    batcher.start()
    assert await asyncio.get_running_loop().run_in_executor(None, both_in.wait, 30)
    assert sorted(entered) == [[1], [2]]  # the third batch waits for a free slot
    release.set()
    assert [(await f).value for f in futures] == [10, 20, 30]
    await batcher.stop()
    assert sorted(entered) == [[1], [2], [3]]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_size": 257, "max_queue_size": 300}, "max_batch_size"),
        ({"max_queue_size": 1}, "max_queue_size"),
        ({"max_batch_delay_s": -1}, "max_batch_delay_s"),
        ({"max_in_flight": 0}, "batches_in_flight"),
    ],
)
async def test_invalid_limits_are_refused(bad: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        make_batcher(RecordingModel(), **bad)
