"""The optimizer step (fp32 and fp16 with loss scaling), epoch meters and top-k counting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.distributed import DistContext
from training.loop import AMP_DTYPES, Engine, EpochMeter, topk_correct


def tiny_engine(amp: str) -> Engine:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return Engine(
        net=net,
        model=net,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step),
        scaler=torch.amp.GradScaler("cpu", enabled=amp == "fp16", init_scale=2.0**10),
        ema=None,
        criterion=nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        amp_dtype=AMP_DTYPES[amp],
    )


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_step_updates_weights_and_schedule(amp: str) -> None:
    engine = tiny_engine(amp)
    before = engine.net[1].weight.detach().clone()
    images, targets = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    loss = engine.step(images, targets)
    assert loss.dtype == torch.float32 and not loss.requires_grad and torch.isfinite(loss)
    assert not torch.equal(engine.net[1].weight, before)
    assert engine.lr == pytest.approx(0.05)
    state = engine.state_dict()
    if amp == "fp16":
        assert state["scaler"]["scale"] == 2.0**10  # unscaled gradients were finite: no back-off
    restored = tiny_engine(amp)
    restored.load_state_dict(state)
    assert torch.equal(restored.net[1].weight, engine.net[1].weight) and restored.lr == engine.lr


def test_epoch_meter_resumes_from_saved_sums() -> None:
    ctx = DistContext()
    meter = EpochMeter(ctx.device)
    meter.add(torch.tensor(2.0), batch_size=4, skipped=1, data_wait=0.5)
    saved = meter.reduced(ctx)
    assert saved == {"loss_sum": 8.0, "samples": 4, "skipped": 1}
    resumed = EpochMeter(ctx.device, saved)
    resumed.add(torch.tensor(1.0), batch_size=4, skipped=0, data_wait=0.0)
    summary = resumed.summary(ctx)
    assert summary["train_loss"] == 1.5 and summary["train_skipped"] == 1


def test_topk_counts_hits_and_caps_k_at_the_class_count() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert topk_correct(logits, targets).tolist() == [1, 3]  # top-5 of 3 classes: every row
    assert topk_correct(logits, targets, ks=(1, 2)).tolist() == [1, 2]
