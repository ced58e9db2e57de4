import json
import struct
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from model import load_checkpoint
from model.checkpoint import REQUIRED_KEYS
from model.convert import main as convert_main
from model.fetch import hash_prefix


@pytest.mark.parametrize(("variant", "resize"), [("v1", 256), ("v2", 232)])
def test_torchvision_round_trip_gives_identical_logits(tmp_path: Path, variant: str, resize: int) -> None:
    torch.manual_seed(1234)
    reference = resnet50().eval()
    pth = tmp_path / "resnet50-seeded.pth"
    torch.save(reference.state_dict(), pth)
    out = tmp_path / "converted.safetensors"
    assert convert_main(["--from-torchvision", str(pth), "--out", str(out), "--variant", variant]) == 0

    ckpt = load_checkpoint(out)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(ckpt.model(x), reference(x))
    assert ckpt.preprocessing.resize_size == resize and ckpt.preprocessing.crop_size == 224
    assert ckpt.source == f"torchvision:IMAGENET1K_{variant.upper()}"
    assert ckpt.trained and ckpt.num_classes == 1000 and ckpt.labels[281] == "tabby"
    assert ckpt.metrics["top1"] == {"v1": 76.13, "v2": 80.858}[variant]


def test_random_init_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    assert convert_main(["--random-init", "--out", str(out)]) == 0
    with open(out, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        metadata = json.loads(f.read(n))["__metadata__"]
    assert set(REQUIRED_KEYS) <= set(metadata)
    assert metadata["trained"] == "false" and metadata["source"] == "random-init"
    assert metadata["num_classes"] == "1000" and len(json.loads(metadata["labels"])) == 1000


def test_convert_rejects_a_file_that_is_not_resnet50(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pth = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, pth)
    assert convert_main(["--from-torchvision", str(pth), "--out", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert not (tmp_path / "o.safetensors").exists()


def test_hash_prefix_comes_from_torchvision_file_name() -> None:
    assert hash_prefix("https://download.pytorch.org/models/resnet50-11ad3fa6.pth") == "11ad3fa6"
