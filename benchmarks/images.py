"""Real photographs (shipped with scikit-image), JPEG-encoded once, as the benchmark's uploads."""

from __future__ import annotations

import io

from PIL import Image
from skimage import data

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # 451x300 to 640x427, typical web photo sizes


def benchmark_jpegs(quality: int = 90) -> list[bytes]:
    """The photos as JPEG bytes, in a fixed order."""
    encoded = []
    for name in PHOTOS:
        buffer = io.BytesIO()
        Image.fromarray(getattr(data, name)()).convert("RGB").save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    return encoded
