"""Image folders: clear errors for bad layouts, unreadable files skipped and counted, exact sharding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.photos import phone_photo
from model import EvalPreset, Preprocessing, TrainPreset
from model.decoding import decode_for_eval
from tests.training.conftest import CLASSES, make_image_folder, write_split
from training.data import (
    DataError,
    EvalDataset,
    TrainDataset,
    collate,
    read_rgb,
    scan_dataset,
    scan_for_labels,
    scan_split,
)
from training.samplers import ShardSampler, TrainSampler, derive_seed


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data")


def test_scan_lists_classes_from_folders(folder: Path) -> None:
    train, val = scan_dataset(folder)
    assert train.classes == val.classes == CLASSES
    assert len(train) == 41 and len(val) == 16  # unreadable files are found; they are skipped when read
    assert {class_id for _, class_id in train.samples} == set(range(5))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.rename(d.parent / "elsewhere"), "no such data directory"),
        (lambda d: _remove(d / "val"), "val: no such directory"),
        (lambda d: [_remove(c) for c in (d / "train").iterdir()], "train: no class folders"),
        (lambda d: [p.unlink() for p in (d / "val" / "green").iterdir()], "class 'green' has no images"),
        (lambda d: (d / "val" / "green").rename(d / "val" / "teal"), "only in train: green; only in val: teal"),
    ],
)
def test_bad_layouts_are_named(folder: Path, damage: object, message: str) -> None:
    damage(folder)  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as info:
        scan_dataset(folder)
    assert "\n" not in str(info.value)


def _remove(path: Path) -> None:
    for child in sorted(path.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    path.rmdir()


def test_non_images_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    write_split(tmp_path / "split", 2, np.random.default_rng(0), classes=["amber", "blue"])
    (tmp_path / "split" / "amber" / "notes.txt").write_text("not an image")
    (tmp_path / "split" / "amber" / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "split" / ".cache").mkdir()
    split = scan_split(tmp_path / "split")
    assert split.classes == ["amber", "blue"] and len(split) == 4


def test_train_dataset_passes_over_unreadable_files_and_counts_them(folder: Path) -> None:
    train, _ = scan_dataset(folder)
    broken = next(i for i, (path, _) in enumerate(train.samples) if path.endswith("broken.jpg"))
    dataset = TrainDataset(train, TrainPreset(crop_size=32))
    sample = dataset[(broken, 123)]
    assert sample.skipped == 1 and sample.image.shape == (3, 32, 32)
    assert sample.target == train.samples[broken + 1][1]  # the next file stands in
    batch = collate([sample, dataset[(0, 1)]])
    assert batch.images.shape == (2, 3, 32, 32) and batch.skipped == 1


def test_train_augmentation_depends_only_on_index_and_seed(folder: Path) -> None:
    train, _ = scan_dataset(folder)
    dataset = TrainDataset(train, TrainPreset(crop_size=32, auto_augment="ta_wide", random_erase=0.5))
    torch.manual_seed(1)
    first = dataset[(3, 99)].image
    torch.manual_seed(2)  # the global RNG must not matter, nor be disturbed
    state = torch.get_rng_state()
    assert torch.equal(dataset[(3, 99)].image, first)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(dataset[(3, 100)].image, first)


def test_eval_dataset_leaves_unreadable_files_out(folder: Path) -> None:
    _, val = scan_dataset(folder)
    dataset = EvalDataset(val, EvalPreset(Preprocessing(resize_size=37, crop_size=32)))
    items = [dataset[i] for i in range(len(dataset))]
    assert sum(item is None for item in items) == 1
    batch = collate(items)
    assert len(batch.targets) == 15 and batch.skipped == 1
    assert batch.images.shape == (15, 3, 32, 32) and batch.images.dtype == torch.uint8
    empty = collate([None, None])
    assert len(empty.targets) == 0 and empty.skipped == 2


@pytest.mark.parametrize("reduced", [True, False])
def test_eval_dataset_decodes_as_the_service_does(tmp_path: Path, reduced: bool) -> None:
    """Reduced by default (a 1600x1200 JPEG at 1/4 of its size for resize 232), exact on request."""
    path = tmp_path / "val" / "cat" / "phone.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(phone_photo("chelsea", (1600, 1200), orientation=6))
    preset = EvalPreset(Preprocessing())
    sample = EvalDataset(scan_split(tmp_path / "val"), preset, reduced=reduced)[0]
    assert sample is not None
    with Image.open(path) as img:
        served = decode_for_eval(img, preset, reduced=reduced)
    with Image.open(path) as img:
        other = decode_for_eval(img, preset, reduced=not reduced)
    assert torch.equal(sample.image, served) and not torch.equal(sample.image, other)
    assert sample.image.shape == (3, 224, 224)


def test_scan_for_labels_maps_folders_to_model_class_ids(folder: Path) -> None:
    labels = ["zebra", *reversed(CLASSES)]
    split = scan_for_labels(folder / "val", labels)
    path, class_id = split.samples[0]
    assert labels[class_id] == Path(path).parent.name
    with pytest.raises(DataError, match="class folders the model does not know: amber"):
        scan_for_labels(folder / "val", ["blue", "green", "red", "violet"])


def test_read_rgb_applies_exif_orientation_and_composites_alpha(tmp_path: Path) -> None:
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    wide.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_rgb(str(tmp_path / "rotated.jpg")).size == (20, 40)
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    clear = read_rgb(str(tmp_path / "clear.png"))
    assert clear.mode == "RGB" and clear.getpixel((0, 0)) == (255, 255, 255)


def test_train_sampler_deals_disjoint_global_batches() -> None:
    ranks = [TrainSampler(43, batch_size=4, rank=r, world_size=2, seed=5) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(3)
    seen = [[index for index, _ in sampler] for sampler in ranks]
    assert ranks[0].steps_per_epoch == 5 and all(len(s) == 20 for s in seen)
    assert not set(seen[0]) & set(seen[1])  # 40 distinct images; the 3 that do not fill a global batch wait
    assert seen != [[i for i, _ in s] for s in _fresh(ranks, epoch=4)]  # a new order every epoch


def _fresh(ranks: list[TrainSampler], epoch: int) -> list[TrainSampler]:
    for sampler in ranks:
        sampler.set_epoch(epoch)
    return ranks


def test_train_sampler_resumes_mid_epoch() -> None:
    sampler = TrainSampler(30, batch_size=3, rank=0, world_size=1, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start_step=4)
    assert list(sampler) == full[12:] and len(sampler) == len(full) - 12
    assert full[0][1] == derive_seed(0, 2, full[0][0])


def test_train_sampler_refuses_a_split_smaller_than_a_global_batch() -> None:
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TrainSampler(7, batch_size=4, rank=0, world_size=2, seed=0)


def test_shard_sampler_counts_every_index_once() -> None:
    shards = [list(ShardSampler(15, rank=r, world_size=2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(15))
    assert [len(s) for s in shards] == [8, 7]
