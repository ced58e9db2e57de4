"""The batch delay is waited only for images that could still join the batch (``admitted``).

No test sleeps: the delay is an hour, so a batch that waited for it would fail the test's timeout.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.app.test_batcher import LATER, RecordingModel, deadline, make_batcher, wait_until_entered

pytestmark = pytest.mark.anyio


async def test_a_lone_request_does_not_wait_the_batch_delay() -> None:
    # The service holds this one image only: no other can join its batch, so waiting would only add latency.
    model = RecordingModel()
    batcher = make_batcher(model, admitted=lambda: 1, max_batch_size=8, max_batch_delay_s=LATER)
    batcher.start()
    async with asyncio.timeout(30):
        (outcome,) = await batcher.submit([7], deadline())
    await batcher.stop()
    assert (outcome.value, outcome.batch_size) == (70, 1)
    assert model.batches == [[7]]


async def test_a_batch_waits_for_admitted_images_still_being_decoded() -> None:
    held = 2  # the second image is admitted and still decoding when the first reaches the batcher
    model = RecordingModel()
    batcher = make_batcher(model, admitted=lambda: held, max_batch_size=8, max_batch_delay_s=LATER)
    batcher.start()
    first = batcher.submit_nowait([1], deadline())
    for _ in range(20):  # let the collector run as often as it wants: it must keep waiting
        await asyncio.sleep(0)
    assert model.batches == []
    second = batcher.submit_nowait([2], deadline())
    async with asyncio.timeout(30):
        values = [(await f).value for f in first + second]
    await batcher.stop()
    assert model.batches == [[1, 2]]
    assert values == [10, 20]


async def test_images_in_the_running_batch_are_not_waited_for() -> None:
    # Two images held: one on the model, one just queued. Nothing else can come, so the second batch is
    # collected at once and runs as soon as the first is done, not after the delay.
    held = [1]
    model = RecordingModel(hold_first=True)
    batcher = make_batcher(model, admitted=lambda: held[0], max_batch_size=8, max_batch_delay_s=LATER)
    batcher.start()
    first = batcher.submit_nowait([1], deadline())
    await wait_until_entered(model)
    held[0] = 2
    second = batcher.submit_nowait([2], deadline())
    model.gate.set()
    async with asyncio.timeout(30):
        values = [(await f).value for f in first + second]
    await batcher.stop()
    assert model.batches == [[1], [2]]
    assert values == [10, 20]
