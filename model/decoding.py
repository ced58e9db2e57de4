"""Encoded image -> the eval preset's uint8 crop, decoding no more pixels than the resize keeps.

A 12 MP phone photo (4032x3024) is resized to 309x232 before its 224 crop, so decoding every pixel
is mostly wasted work. A JPEG can be decoded at 1/2, 1/4 or 1/8 of its size in the DCT domain
(libjpeg-turbo's scaling, which Pillow exposes as ``Image.draft``) for a fraction of the cost. The
reduced path decodes at the smallest such scale whose short side still keeps twice the preset's
resize size, then resizes from there to exactly the size, and exactly the region, that the full-size
path resizes to. The margin is what keeps the result close to the exact path: the DCT scaling
averages blocks of pixels without filtering what lies between them, and only a resize that still
shrinks by 2x or more filters that away (with no margin, fine textures came out 3-4 grey levels off).
So a JPEG is reduced at all only when its short side is at least four times the resize size (928 px
for resize 232, 1024 for 256); smaller images give the exact path's pixels bit for bit.

Other formats have no reduced decoding in Pillow; their resize first averages whole blocks of pixels
down to the same margin (Pillow's ``reducing_gap``), which takes effect from four times the resize size.
docs/benchmarks.md ("Reduced decoding") gives the measured speed and pixel differences.
"""

from __future__ import annotations

from PIL import ExifTags, Image
from torch import Tensor

from model.images import upright_rgb
from model.presets import Box, EvalPreset

DCT_SCALES = (8, 4, 2)  # the reductions Pillow asks libjpeg for, largest first
MARGIN = 2  # a reduced image keeps at least this many times the resize size on its short side
# How each EXIF orientation moves the edges of an image: the new (left, top, right, bottom) are the
# old ones at these indices (the transpositions ``ImageOps.exif_transpose`` applies).
_EDGES_AFTER_ORIENTATION = {
    2: (2, 1, 0, 3),  # mirrored left-right
    3: (2, 3, 0, 1),  # rotated 180°
    4: (0, 3, 2, 1),  # mirrored top-bottom
    5: (1, 0, 3, 2),  # transposed
    6: (3, 0, 1, 2),  # rotated 90° clockwise
    7: (3, 2, 1, 0),  # transversed
    8: (1, 2, 3, 0),  # rotated 90° counter-clockwise
}
_SWAPS_AXES = {5, 6, 7, 8}


def dct_scale(size: tuple[int, int], resize_size: int, margin: int = MARGIN) -> int:
    """The reduction a JPEG of ``size`` is decoded at: the largest of 8, 4, 2 that leaves its short side
    at least ``margin * resize_size``, else 1 (full size). It is the scale ``Image.draft`` picks when
    asked for that size."""
    fits = min(size) // (margin * resize_size)
    return next((scale for scale in DCT_SCALES if fits >= scale), 1)


def decode_for_eval(img: Image.Image, preset: EvalPreset, *, reduced: bool = True, margin: int = MARGIN) -> Tensor:
    """An opened image (header parsed, no pixel decoded yet) -> uint8 (3, crop, crop) through ``preset``.

    ``reduced=False`` is the reference path: full decode, ``upright_rgb``, ``preset.to_uint8`` (bit for
    bit torchvision's eval preset). ``reduced=True`` decodes a large JPEG at a reduced DCT scale and
    resizes large images of other formats block-wise first, keeping ``margin`` times the resize size
    (see the module's docstring; other margins are for measuring). Either way EXIF orientation is
    applied and every pixel mode becomes RGB. Corrupt or truncated data raises whatever Pillow raises
    while decoding.
    """
    if not reduced:
        img.load()
        return preset.to_uint8(upright_rgb(img))
    resize = preset.preprocessing.resize_size
    full_size, box = img.size, (0.0, 0.0, float(img.width), float(img.height))
    if dct_scale(img.size, resize, margin) > 1:
        drafted = img.draft(None, (margin * resize, margin * resize))  # None for formats other than JPEG
        if drafted is not None:
            box = drafted[1]
    img.load()
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    upright = upright_rgb(img)
    if orientation in _SWAPS_AXES:
        full_size = (full_size[1], full_size[0])
    # Pillow's block averaging works per axis, and the long side's ratio to its target is a little
    # larger than the short side's: it would start on one axis of an image just below the threshold.
    gap = float(margin) if min(upright.size) >= 2 * margin * resize else None
    return preset.to_uint8_reduced(upright, full_size, _orient_box(box, img.size, orientation), reducing_gap=gap)


def _orient_box(box: Box, size: tuple[int, int], orientation: int) -> Box:
    """Where ``box`` of an image of ``size`` lies once the image is turned upright for ``orientation``.

    A reduced decode covers a little more than the image (a last, partial row and column of pixels),
    so the box is not the whole image and turning the image moves that margin to another edge.
    """
    order = _EDGES_AFTER_ORIENTATION.get(orientation)
    if order is None:
        return box
    width, height = size
    margins = (box[0], box[1], width - box[2], height - box[3])
    left, top, right, bottom = (margins[i] for i in order)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return (left, top, width - right, height - bottom)
