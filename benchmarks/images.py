"""Real photographs (shipped with scikit-image), JPEG-encoded once, as the benchmark's uploads.

scikit-image is imported only when a photo is asked for: the GPU check imports the benchmarks on a
host without it (and uses ``benchmarks.photos.synthetic_photo`` there).
"""

from __future__ import annotations

import io

from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # 451x300 to 640x427, typical web photo sizes


def scikit_photo(name: str) -> Image.Image:
    """scikit-image's photograph ``name`` as an RGB image."""
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def benchmark_jpegs(quality: int = 90) -> list[bytes]:
    """The photos as JPEG bytes, in a fixed order."""
    encoded = []
    for name in PHOTOS:
        buffer = io.BytesIO()
        scikit_photo(name).save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    return encoded
