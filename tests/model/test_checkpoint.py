import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from model.checkpoint import REQUIRED_KEYS, clean_state_dict
from tests.conftest import TINY_LABELS, TINY_PREPROCESSING


def rewrite_metadata(src: Path, dst: Path, **changes: str) -> Path:
    tensors = safetensors.torch.load_file(src)
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        metadata = json.loads(f.read(n))["__metadata__"]
    metadata.update(changes)
    safetensors.torch.save_file(tensors, dst, metadata=metadata)
    return dst


def test_round_trip_keeps_weights_and_metadata(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.labels == TINY_LABELS
    assert ckpt.num_classes == 3
    assert ckpt.preprocessing == TINY_PREPROCESSING
    assert ckpt.trained is True and ckpt.source == "test"
    assert ckpt.metrics == {"top1": 33.3}
    assert ckpt.version == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()[:12]
    torch.manual_seed(0)
    reference = build_model(3).state_dict()
    for key, tensor in ckpt.model.state_dict().items():
        assert torch.equal(tensor, reference[key]), key
    assert not ckpt.model.training


def test_metadata_has_every_design_key(tiny_checkpoint: Path) -> None:
    with open(tiny_checkpoint, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        metadata = json.loads(f.read(n))["__metadata__"]
    assert set(REQUIRED_KEYS) <= set(metadata)
    assert json.loads(metadata["preprocessing"]).keys() == {"resize_size", "crop_size", "mean", "std", "interpolation"}
    assert metadata["arch"] == "resnet50" and metadata["format_version"] == "1"


def test_a_saved_checkpoint_is_readable_by_other_users(tiny_checkpoint: Path) -> None:
    assert tiny_checkpoint.stat().st_mode & 0o777 == 0o644


def test_wrapper_prefixes_are_stripped() -> None:
    sd = {"module._orig_mod.fc.weight": torch.zeros(2, 2), "_orig_mod.conv1.weight": torch.ones(1)}
    assert set(clean_state_dict(sd)) == {"fc.weight", "conv1.weight"}


def test_save_refuses_label_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 outputs but 2 labels"):
        save_checkpoint(
            tmp_path / "x.safetensors",
            build_model(3).state_dict(),
            labels=["a", "b"],
            preprocessing=TINY_PREPROCESSING,
            trained=False,
            source="test",
        )


def assert_one_line_error(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "nope.safetensors", "no such file")


@pytest.mark.parametrize("keep", [0, 5, 100, 1000, 10_000_000])
def test_truncated_file(tiny_checkpoint: Path, tmp_path: Path, keep: int) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny_checkpoint.read_bytes()[:keep])
    assert_one_line_error(path, "corrupt or truncated")


def test_corrupt_header(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_checkpoint.read_bytes())
    data[8:40] = b"\xff" * 32
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bytes(data))
    assert_one_line_error(path, "corrupt")


def test_pickle_renamed(tmp_path: Path) -> None:
    path = tmp_path / "pickle.safetensors"
    torch.save({"w": torch.zeros(1)}, path)
    assert_one_line_error(path, "pickled PyTorch file")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"format_version": "99"}, "unknown format_version '99'"),
        ({"arch": "vit_b_16"}, "arch is 'vit_b_16'"),
        ({"num_classes": "4"}, "num_classes is 4 but there are 3 labels"),
        ({"num_classes": "2", "labels": '["a", "b"]'}, "fc.weight has 3 rows"),
        ({"labels": "not json"}, "labels is not valid JSON"),
        ({"preprocessing": '{"resize_size": 10, "crop_size": 20}'}, "bad preprocessing"),
    ],
)
def test_bad_metadata(tiny_checkpoint: Path, tmp_path: Path, changes: dict[str, str], match: str) -> None:
    path = rewrite_metadata(tiny_checkpoint, tmp_path / "m.safetensors", **changes)
    assert_one_line_error(path, match)


def test_wrong_tensors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    tensors = safetensors.torch.load_file(tiny_checkpoint)
    del tensors["layer4.2.conv3.weight"]
    with open(tiny_checkpoint, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        metadata = json.loads(f.read(n))["__metadata__"]
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    assert_one_line_error(path, "weights do not fit resnet50")


def test_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = tiny_checkpoint.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + n].rstrip(b" ")
    padded = -(-(len(header) + 1) // 256) * 256 + 128  # JSON allows trailing spaces; length = 0x..80
    path = tmp_path / "x80.safetensors"
    path.write_bytes(struct.pack("<Q", padded) + header.ljust(padded) + data[8 + n :])
    assert path.read_bytes()[:1] == b"\x80"
    assert load_checkpoint(path).labels == TINY_LABELS


def test_a_fifo_a_device_or_a_file_over_the_limit_is_refused_unread(tiny_checkpoint: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=r"fifo.safetensors: is not a regular file \(a FIFO\)"):
        load_checkpoint(fifo)
    with pytest.raises(CheckpointError, match="/dev/zero: is not a regular file"):
        load_checkpoint("/dev/zero")
    size = tiny_checkpoint.stat().st_size
    with pytest.raises(CheckpointError, match=f"is {size} bytes, over the limit of {size - 1}"):
        load_checkpoint(tiny_checkpoint, max_bytes=size - 1)
    assert load_checkpoint(tiny_checkpoint, max_bytes=size).num_classes > 0
