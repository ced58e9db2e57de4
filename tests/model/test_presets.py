import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

from model import EvalPreset, Preprocessing, TrainPreset


@pytest.mark.parametrize("pre", [Preprocessing(), Preprocessing(resize_size=256), Preprocessing(72, 64)])
def test_eval_preset_equals_torchvision_reference(photos: dict[str, Image.Image], pre: Preprocessing) -> None:
    reference = ImageClassification(
        crop_size=pre.crop_size,
        resize_size=pre.resize_size,
        mean=pre.mean,
        std=pre.std,
        interpolation=InterpolationMode(pre.interpolation),
    )
    preset = EvalPreset(pre)
    for img in photos.values():
        assert torch.equal(preset(img), reference(img))


def test_uint8_then_normalize_on_a_batch(photos: dict[str, Image.Image]) -> None:
    preset = EvalPreset(Preprocessing())
    batch = torch.stack([preset.to_uint8(img) for img in photos.values()])
    assert batch.dtype == torch.uint8 and batch.shape[1:] == (3, 224, 224)
    expected = torch.stack([preset(img) for img in photos.values()])
    assert torch.equal(preset.normalize(batch), expected)
    assert preset.normalize(batch, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resize_size": 100, "crop_size": 200}, "crop_size"),
        ({"interpolation": "cubic"}, "cubic"),
        ({"std": (1, 0, 1)}, "std"),
    ],
)
def test_preprocessing_validates(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Preprocessing(**kwargs)  # type: ignore[arg-type]


def test_preprocessing_json_round_trip() -> None:
    import json

    pre = Preprocessing(resize_size=256, interpolation="bicubic")
    assert Preprocessing.from_dict(json.loads(pre.to_json())) == pre
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        Preprocessing.from_dict({"resize": 3})


@pytest.mark.parametrize("aug", [None, "ta_wide", "ra", "augmix", "imagenet"])
def test_train_preset_shapes(photos: dict[str, Image.Image], aug: str | None) -> None:
    torch.manual_seed(0)
    preset = TrainPreset(crop_size=96, auto_augment=aug, random_erase=0.5)
    out = preset(photos["chelsea"])
    assert out.shape == (3, 96, 96) and out.dtype == torch.float32


def test_train_preset_unknown_augment() -> None:
    with pytest.raises(ValueError, match="unknown auto_augment"):
        TrainPreset(auto_augment="bogus")
