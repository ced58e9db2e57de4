"""Batched JPEG decoding on the GPU (nvJPEG through torchvision), resize and crop there too.

The eval preset's geometry (short-side resize with antialiasing, centre crop) runs on the decoded
tensors, so only the compressed bytes cross PCIe. Results differ slightly from the CPU path (nvJPEG's
IDCT and a float resize instead of PIL's fixed-point one); docs/benchmarks.md gives the measured
top-5 agreement.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from model import Preprocessing


def decode_jpegs_on_device(jpegs: list[bytes], preprocessing: Preprocessing, device: torch.device) -> Tensor:
    """JPEG files -> uint8 (N, 3, crop, crop) on ``device``, EXIF orientation applied.

    Raises ``RuntimeError`` if nvJPEG rejects any file; callers fall back to the CPU path.
    """
    data = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in jpegs]
    images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    crop = preprocessing.crop_size
    out = torch.empty((len(images), 3, crop, crop), dtype=torch.uint8, device=device)
    interpolation = InterpolationMode(preprocessing.interpolation)
    for i, img in enumerate(images):
        img = F.resize(img, [preprocessing.resize_size], interpolation=interpolation, antialias=True)
        out[i] = F.center_crop(img, [crop])
    return out
