"""--init: scratch, ImageNet weights (ours or torchvision's .pth, found offline), or our checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck

from model import load_checkpoint
from tests.conftest import TINY_LABELS
from tests.training.conftest import CLASSES
from training.train import main
from training.weights import TORCHVISION_FILES, find_imagenet_weights, initial_network


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 1000-class ResNet-50 saved the way torchvision publishes its weights."""
    torch.manual_seed(42)
    path = tmp_path_factory.mktemp("hub") / TORCHVISION_FILES["v2"]
    torch.save(resnet50().state_dict(), path)
    return path


def test_imagenet_without_weights_says_how_to_provide_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ValueError) as info:
        find_imagenet_weights(None)
    message = str(info.value)
    assert "\n" not in message
    assert "--init-weights FILE" in message and "python -m model.fetch" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_imagenet_weights_are_found_in_torchvisions_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torchvision_pth: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / TORCHVISION_FILES["v2"]
    cached.parent.mkdir(parents=True)
    cached.symlink_to(torchvision_pth)
    assert find_imagenet_weights(None) == cached
    with pytest.raises(ValueError, match=r"--init-weights nope\.pth: no such file"):
        find_imagenet_weights("nope.pth")


def test_imagenet_init_keeps_the_backbone_and_gets_a_new_head(torchvision_pth: Path) -> None:
    net, origin = initial_network("imagenet", str(torchvision_pth), CLASSES)
    reference = torch.load(torchvision_pth, weights_only=True)
    state = net.state_dict()
    assert state["fc.weight"].shape == (5, 2048)
    assert all(torch.equal(state[k], reference[k]) for k in reference if not k.startswith("fc."))
    assert "new 5-class head (it had 1000)" in origin
    assert net.training


def test_our_checkpoint_keeps_its_head_when_the_classes_match(tiny_checkpoint: Path) -> None:
    net, origin = initial_network(str(tiny_checkpoint), None, TINY_LABELS)
    assert torch.equal(net.state_dict()["fc.weight"], load_checkpoint(tiny_checkpoint).model.state_dict()["fc.weight"])
    assert origin == str(tiny_checkpoint)
    _, renamed = initial_network(str(tiny_checkpoint), None, ["x", "y", "z"])
    assert "labels differ" in renamed
    wider, _ = initial_network(str(tiny_checkpoint), None, CLASSES)
    assert wider.state_dict()["fc.weight"].shape == (5, 2048)


def test_scratch_can_start_every_residual_block_as_the_identity() -> None:
    net, origin = initial_network("scratch", None, CLASSES, zero_init_residual=True)
    blocks = [m for m in net.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and all(not b.bn3.weight.detach().any() for b in blocks)
    assert "zeroed" in origin
    plain, _ = initial_network("scratch", None, CLASSES)
    assert all(float(m.bn3.weight.detach().min()) == 1.0 for m in plain.modules() if isinstance(m, Bottleneck))


def test_finetune_recipe_from_torchvision_weights(image_folder: Path, torchvision_pth: Path, tmp_path: Path) -> None:
    out = tmp_path / "finetune"
    argv = ["--data-dir", str(image_folder), "--output-dir", str(out), "--recipe", "resnet50_1xb8_finetune"]
    argv += ["--init-weights", str(torchvision_pth), "--epochs", "1", "--warmup-epochs", "0", "--image-size", "32"]
    argv += ["--workers", "0", "--device", "cpu", "--print-freq", "100"]
    main(argv)
    ckpt = load_checkpoint(out / "model.safetensors")
    assert ckpt.labels == CLASSES and ckpt.metrics["recipe"] == "resnet50_1xb8_finetune"
    state = torch.load(out / "last.ckpt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["nesterov"] is True
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 5e-4


def test_a_training_state_is_not_taken_for_weights(tmp_path: Path) -> None:
    state = tmp_path / "last.ckpt"
    state.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is a training state: continue that run with --resume"):
        initial_network(str(state), None, CLASSES)
