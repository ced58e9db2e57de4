"""Preprocessing, defined once: training's validation and the service both use ``EvalPreset``.

Train/serve skew is the classic bug of this field, so the eval pipeline is exactly torchvision's
``ImageClassification`` preset (resize and crop on the PIL image, uint8 tensor, then normalize)
and its parameters travel inside every checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms import functional as F
from torchvision.transforms.functional import pil_modes_mapping

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Resize-then-crop materialises the whole resized image: for an extreme aspect ratio (a 1x200000
# strip is a few hundred bytes of PNG) that is gigabytes. Past this many resized pixels only the
# region the crop keeps is resized, which agrees with the reference within one grey level.
MAX_RESIZED_PIXELS = 1 << 22
Box = tuple[float, float, float, float]  # (left, top, right, bottom) in pixels, as Pillow's resize takes it


@dataclass(frozen=True)
class Preprocessing:
    """Eval-time resize/crop/normalisation parameters, as stored in a checkpoint."""

    resize_size: int = 232
    crop_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if not 0 < self.crop_size <= self.resize_size:
            raise ValueError(f"need 0 < crop_size <= resize_size, got crop {self.crop_size}, resize {self.resize_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels and std > 0, got {self.mean}, {self.std}")
        InterpolationMode(self.interpolation)  # raises ValueError naming the bad mode

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Build from the JSON object stored in a checkpoint (unknown keys are an error)."""
        fields = {"resize_size", "crop_size", "mean", "std", "interpolation"}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {sorted(unknown)}")
        args = dict(data)
        for key in ("mean", "std"):
            if key in args:
                args[key] = tuple(float(v) for v in args[key])
        return cls(**args)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class EvalPreset:
    """PIL image -> normalised float tensor (C, H, W), the reference eval pipeline.

    The work is split so the service can ship uint8 to the device and normalise there:
    ``to_uint8`` (CPU, per image) then ``normalize`` (any device, batched).
    """

    def __init__(self, preprocessing: Preprocessing) -> None:
        self.preprocessing = preprocessing
        self.interpolation = InterpolationMode(preprocessing.interpolation)
        self._constants: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def resizes_whole(self, size: tuple[int, int]) -> bool:
        """Whether an image of ``size`` is resized whole; past ``MAX_RESIZED_PIXELS`` only the kept region is."""
        width, height = resized_size(size, self.preprocessing.resize_size)
        return width * height <= MAX_RESIZED_PIXELS

    def to_uint8(self, img: Image.Image) -> Tensor:
        """Resize the short side, centre-crop; uint8 (3, crop, crop)."""
        p = self.preprocessing
        if not self.resizes_whole(img.size):
            whole = (0.0, 0.0, float(img.width), float(img.height))
            return F.pil_to_tensor(self._resize_kept_region(img, whole, *resized_size(img.size, p.resize_size)))
        img = F.resize(img, [p.resize_size], interpolation=self.interpolation, antialias=True)
        img = F.center_crop(img, [p.crop_size])
        return F.pil_to_tensor(img)

    def to_uint8_reduced(
        self, img: Image.Image, size: tuple[int, int], box: Box, reducing_gap: float | None = None
    ) -> Tensor:
        """``to_uint8`` of a ``size`` (width, height) image that ``img`` holds at a lower resolution.

        ``box`` is the region of ``img`` the full image covers: a JPEG decoded at 1/8 of 4001 pixels
        is 501 wide, of which 500.125 are the image. Resizing from ``box`` to the size the full image
        would be resized to keeps the geometry exact; ``reducing_gap`` is Pillow's ``resize`` option.
        """
        p = self.preprocessing
        width, height = resized_size(size, p.resize_size)
        # An image held reduced is resized only where the crop is, a quarter less work on a 4:3 photo: Pillow's
        # filter reads past a box's edges, so that is the whole resize's crop but for a rounding (one grey
        # level on 0.01% of pixels). Not with block averaging first, whose blocks would start at the region's
        # edge, nor at full size, where the pixels stay bit for bit the reference's.
        if (reducing_gap is None and img.size != size) or not self.resizes_whole(size):
            return F.pil_to_tensor(self._resize_kept_region(img, box, width, height))
        resample = pil_modes_mapping[self.interpolation]
        resized = img.resize((width, height), resample, box=box, reducing_gap=reducing_gap)
        return F.pil_to_tensor(F.center_crop(resized, [p.crop_size]))

    def _resize_kept_region(self, img: Image.Image, box: Box, width: int, height: int) -> Image.Image:
        """What resizing ``box`` of ``img`` to ``width`` x ``height`` then centre-cropping gives, resizing
        only the kept region."""
        crop = self.preprocessing.crop_size
        left, top = round((width - crop) / 2), round((height - crop) / 2)  # as F.center_crop places it
        scale_x, scale_y = (box[2] - box[0]) / width, (box[3] - box[1]) / height
        kept = (
            box[0] + left * scale_x,
            box[1] + top * scale_y,
            box[0] + (left + crop) * scale_x,
            box[1] + (top + crop) * scale_y,
        )
        return img.resize((crop, crop), pil_modes_mapping[self.interpolation], box=kept)

    def normalize(self, batch: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """uint8 (..., 3, H, W) -> normalised ``dtype``; the maths runs in fp32 on ``batch``'s device."""
        mean, std = self._device_constants(batch.device)
        return ((batch.float() / 255.0 - mean) / std).to(dtype)

    def _device_constants(self, device: torch.device) -> tuple[Tensor, Tensor]:
        # Kept per device: a host-to-device copy on every call would be wasted work, and is not
        # allowed at all while a CUDA graph is being captured.
        if device not in self._constants:
            p = self.preprocessing
            self._constants[device] = (
                torch.tensor(p.mean, device=device).view(-1, 1, 1),
                torch.tensor(p.std, device=device).view(-1, 1, 1),
            )
        return self._constants[device]

    def __call__(self, img: Image.Image) -> Tensor:
        return self.normalize(self.to_uint8(img))


def resized_size(size: tuple[int, int], resize_size: int) -> tuple[int, int]:
    """The (width, height) that resizing the short side to ``resize_size`` gives, as torchvision computes it."""
    width, height = size
    short, long = sorted((width, height))
    new_long = int(resize_size * long / short)
    return (resize_size, new_long) if width <= height else (new_long, resize_size)


@dataclass(frozen=True)
class TrainPreset:
    """Training augmentation, after torchvision's reference ``ClassificationPresetTrain``."""

    crop_size: int = 224
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    interpolation: str = "bilinear"
    hflip_prob: float = 0.5
    auto_augment: str | None = None  # "ta_wide", "ra", "augmix" or "imagenet"/"cifar10"/"svhn"
    random_erase: float = 0.0
    transform: v2.Compose = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "transform", v2.Compose(self._build()))

    def _build(self) -> list[v2.Transform]:
        interpolation = InterpolationMode(self.interpolation)
        steps: list[v2.Transform] = [
            v2.PILToTensor(),
            v2.RandomResizedCrop(self.crop_size, interpolation=interpolation, antialias=True),
        ]
        if self.hflip_prob > 0:
            steps.append(v2.RandomHorizontalFlip(self.hflip_prob))
        if self.auto_augment:
            steps.append(_auto_augment(self.auto_augment, interpolation))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]
        if self.random_erase > 0:
            steps.append(v2.RandomErasing(p=self.random_erase))
        return steps

    def __call__(self, img: Image.Image) -> Tensor:
        out: Tensor = self.transform(img)
        return out


def _auto_augment(name: str, interpolation: InterpolationMode) -> v2.Transform:
    if name == "ta_wide":
        return v2.TrivialAugmentWide(interpolation=interpolation)
    if name == "ra":
        return v2.RandAugment(interpolation=interpolation)
    if name == "augmix":
        return v2.AugMix(interpolation=interpolation)
    try:
        policy = v2.AutoAugmentPolicy(name)
    except ValueError:
        raise ValueError(f"unknown auto_augment {name!r}: use ta_wide, ra, augmix, imagenet, cifar10 or svhn") from None
    return v2.AutoAugment(policy, interpolation=interpolation)
