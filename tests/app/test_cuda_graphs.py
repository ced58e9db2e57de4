"""The CUDA fast path against eager PyTorch, on a real GPU."""

import threading
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from app.engine.backends.cuda_graphs import GraphedForward
from model import EvalPreset, Preprocessing, build_model

pytestmark = pytest.mark.gpu
SHAPE = (3, 64, 64)


def make_forward(dtype: torch.dtype):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = build_model(10).to("cuda", dtype=dtype, memory_format=torch.channels_last).eval()
    preset = EvalPreset(Preprocessing(72, 64))

    def forward(batch: Tensor) -> Tensor:
        x = preset.normalize(batch, dtype).contiguous(memory_format=torch.channels_last)
        return net(x).float().softmax(dim=1)

    return forward


def eager(forward, batch: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        return forward(batch.cuda()).cpu()


@pytest.fixture(scope="module", autouse=True)
def exact_fp32() -> Iterator[None]:
    """fp32 without TF32: TF32 convolutions round differently per cuDNN algorithm, and the algorithm
    depends on the batch size, so a padded bucket and an eager batch would differ by ~1e-3."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def graphed_fp32() -> tuple[GraphedForward, object]:
    torch.backends.cudnn.benchmark = True
    forward = make_forward(torch.float32)
    graphed = GraphedForward(forward, device=torch.device("cuda"), image_shape=SHAPE, num_classes=10, max_batch_size=8)
    graphed.capture()
    return graphed, forward


def test_graphs_match_eager_for_every_size(graphed_fp32) -> None:  # type: ignore[no-untyped-def]
    graphed, forward = graphed_fp32
    for n in range(1, 9):
        batch = torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8)
        out = graphed(batch)
        assert out.shape == (n, 10) and out.device.type == "cpu"
        torch.testing.assert_close(out, eager(forward, batch), atol=1e-4, rtol=1e-4)


def test_padding_never_leaks_into_results(graphed_fp32) -> None:  # type: ignore[no-untyped-def]
    graphed, _ = graphed_fp32
    batch = torch.randint(0, 256, (3, *SHAPE), dtype=torch.uint8)
    alone = torch.cat([graphed(batch[i : i + 1]) for i in range(3)])
    graphed(torch.full((4, *SHAPE), 255, dtype=torch.uint8))  # leave other data in the bucket's buffer
    torch.testing.assert_close(graphed(batch), alone, atol=1e-4, rtol=1e-4)


def test_device_resident_batches_are_accepted(graphed_fp32) -> None:  # type: ignore[no-untyped-def]
    graphed, _ = graphed_fp32
    batch = torch.randint(0, 256, (5, *SHAPE), dtype=torch.uint8)
    torch.testing.assert_close(graphed(batch.cuda()), graphed(batch))


def test_concurrent_callers_each_get_their_own_answer(graphed_fp32) -> None:  # type: ignore[no-untyped-def]
    graphed, forward = graphed_fp32
    batches = [torch.randint(0, 256, (1 + i % 8, *SHAPE), dtype=torch.uint8) for i in range(24)]
    expected = [eager(forward, b) for b in batches]
    results: dict[int, Tensor] = {}

    def call(i: int) -> None:
        results[i] = graphed(batches[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, want in enumerate(expected):
        torch.testing.assert_close(results[i], want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_graphs_agree_with_fp32(dtype: torch.dtype, graphed_fp32) -> None:  # type: ignore[no-untyped-def]
    _, forward32 = graphed_fp32
    graphed = GraphedForward(
        make_forward(dtype), device=torch.device("cuda"), image_shape=SHAPE, num_classes=10, max_batch_size=4
    )
    graphed.capture()
    batch = torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8)
    torch.testing.assert_close(graphed(batch), eager(forward32, batch), atol=2e-2, rtol=0)
