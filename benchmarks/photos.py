"""Phone-photo uploads, made on the fly: the benchmarks' upload classes and the decoding accuracy tests.

Users upload phone photos: 12 MP (4032x3024) is the common size, and a 12 MP JPEG is a few MB. No
such file is kept in the repository; they are made here, in two ways:

- ``phone_photo``: a real photograph shipped with scikit-image, upscaled (Lanczos) to a phone's size,
  with camera-like noise (luminance and a little chroma), JPEG at a phone's quality, optionally
  stored sideways with an EXIF orientation, as a phone held upright stores it.
- ``synthetic_photo``: NumPy and Pillow only (the GPU host has no scikit-image): smooth colour
  gradients, shapes with soft edges, and the same camera noise. It is a little cheaper to decode than
  a ``phone_photo`` of the same size.

``upload_class`` gives the benchmark's three classes: about 0.2 MP (the web-sized photos every
earlier benchmark used), 2 MP and 12 MP.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from benchmarks.images import PHOTOS, benchmark_jpegs, scikit_photo

# upload class -> (width, height) of its photos; "0.2MP" keeps the photos' own sizes (451x300 to 640x427)
UPLOAD_CLASSES: dict[str, tuple[int, int] | None] = {"0.2MP": None, "2MP": (1632, 1224), "12MP": (4032, 3024)}
QUALITIES = (88, 90, 95, 92)  # per photo, in turn: what phones and their share sheets use
LUMA_NOISE, CHROMA_NOISE = 3.0, 1.5  # standard deviations in grey levels, after the camera's denoising
_ORIENTATION = 0x0112
# The stored pixels for each EXIF orientation: the upright picture turned the way a phone stores it.
_STORED = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}


def phone_photo(name: str, size: tuple[int, int], *, quality: int = 90, orientation: int = 1, seed: int = 0) -> bytes:
    """scikit-image's photo ``name`` as a ``size`` (upright width, height) phone JPEG."""
    upright = scikit_photo(name).resize(size, Image.Resampling.LANCZOS)
    return encode_jpeg(add_camera_noise(upright, seed), quality=quality, orientation=orientation)


def synthetic_photo(size: tuple[int, int], *, quality: int = 90, orientation: int = 1, seed: int = 0) -> bytes:
    """A photo-like ``size`` JPEG from NumPy and Pillow alone: gradients, soft-edged shapes, camera noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    # Slow colour waves (sky, walls, skin), computed at 1/8 size: they have no detail to lose.
    xs = np.linspace(0, 1, max(width // 8, 2), dtype=np.float32)
    ys = np.linspace(0, 1, max(height // 8, 2), dtype=np.float32)[:, None]
    waves = [128 + 90 * np.sin(2 * np.pi * (fx * xs + fy * ys) + 3 * p) for fx, fy, p in rng.uniform(0.5, 2.5, (3, 3))]
    small = Image.fromarray(np.clip(np.stack(waves, axis=-1), 0, 255).astype(np.uint8))
    img = small.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(24):  # objects with hard edges, softened below as a lens softens them
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.03, 0.3) * width, rng.uniform(0.03, 0.3) * height
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=colour)
    img = img.filter(ImageFilter.BoxBlur(1))
    return encode_jpeg(add_camera_noise(img, seed), quality=quality, orientation=orientation)


def add_camera_noise(img: Image.Image, seed: int, rows: int = 256) -> Image.Image:
    """Luminance noise shared by the channels plus weaker per-channel noise.

    One strip of noise is drawn and reused for every strip of rows, shifted by a random number of
    columns each time: 24 MP stays cheap, and no two neighbouring strips look alike.
    """
    rng = np.random.default_rng(seed)
    pixels = np.array(img.convert("RGB"))
    width = pixels.shape[1]
    luma = LUMA_NOISE * rng.standard_normal((rows, width, 1), dtype=np.float32)
    chroma = CHROMA_NOISE * rng.standard_normal((rows, width, 3), dtype=np.float32)
    tile = np.rint(luma + chroma).astype(np.int16)
    for top in range(0, pixels.shape[0], rows):
        strip = pixels[top : top + rows]
        noise = np.roll(tile[: len(strip)], int(rng.integers(width)), axis=1)
        strip[...] = np.clip(strip + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def texture_mosaic(size: tuple[int, int]) -> Image.Image:
    """scikit-image's grass, gravel and brick textures (512x512, detail down to single pixels) tiled over
    ``size``: the hardest case for reduced decoding, where upscaled photos have no fine detail at all."""
    from skimage import data

    tiles = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("grass", "gravel", "brick")]
    mosaic = Image.new("RGB", size)
    for row, top in enumerate(range(0, size[1], 512)):
        for column, left in enumerate(range(0, size[0], 512)):
            mosaic.paste(tiles[(row + column) % len(tiles)], (left, top))
    return mosaic


def encode_jpeg(upright: Image.Image, *, quality: int, orientation: int = 1) -> bytes:
    """JPEG bytes of ``upright``; with an orientation, the pixels are stored turned and the tag set."""
    buffer = io.BytesIO()
    params: dict[str, object] = {"quality": quality}
    stored = upright
    if orientation != 1:
        stored = upright.transpose(_STORED[orientation])
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        params["exif"] = exif.tobytes()
    stored.save(buffer, format="JPEG", **params)
    return buffer.getvalue()


def upload_class(name: str, *, synthetic: bool = False) -> list[bytes]:
    """The four JPEGs of upload class ``name`` (``UPLOAD_CLASSES``); every other one stored sideways."""
    size = UPLOAD_CLASSES[name]
    if size is None:
        if not synthetic:
            return benchmark_jpegs()
        return [synthetic_photo((640, 427), quality=90, seed=i) for i in range(len(PHOTOS))]
    photos = []
    for i, photo in enumerate(PHOTOS):
        orientation = 6 if i % 2 else 1
        if synthetic:
            photos.append(synthetic_photo(size, quality=QUALITIES[i], orientation=orientation, seed=i))
        else:
            photos.append(phone_photo(photo, size, quality=QUALITIES[i], orientation=orientation, seed=i))
    return photos
