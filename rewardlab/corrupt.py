"""mDPO's corrupted image: a small random crop blown back up to the full size.

mDPO (Wang et al., 2024, "mDPO: Conditional Preference Optimization for Multimodal Large Language
Models") makes the model prefer the chosen answer under the real image over the same answer under a
corrupted one, so it cannot ignore the image. Its corruption keeps a random 1-20% of the image's area
(torchvision's ``RandomResizedCrop(scale=(0.01, 0.2))``) and resizes it back to the original size. The
export stores the corrupted image, so the crop is seeded here and the trainer needs no randomness.
torchvision is not a dependency, so its box sampling is re-implemented on ``random.Random``.
"""

from __future__ import annotations

import io
import math
import random

from PIL import Image

MIN_AREA = 0.01  # mDPO keeps 1-20% of the area
MAX_AREA = 0.20
ASPECT_RATIOS = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default, drawn log-uniformly
MAX_TRIES = 10  # as torchvision, before falling back to a centre crop
RESAMPLE = Image.Resampling.BICUBIC

Box = tuple[int, int, int, int]


def _check_area(min_area: float, max_area: float) -> None:
    if not 0.0 < min_area <= max_area <= 1.0:
        raise ValueError(f"Area fractions must satisfy 0 < min_area <= max_area <= 1, got {min_area} and {max_area}.")


def _centre_box(width: int, height: int, target: float) -> Box:
    """Return the centred box closest to ``target`` pixels: square if it fits, else the full short side."""
    short, long = min(width, height), max(width, height)
    side_short = min(short, max(1, round(math.sqrt(target))))
    side_long = min(long, max(1, round(target / side_short)))
    w, h = (side_long, side_short) if width >= height else (side_short, side_long)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def crop_box(
    width: int, height: int, rng: random.Random, min_area: float = MIN_AREA, max_area: float = MAX_AREA
) -> Box:
    """Return a random (left, top, right, bottom) box keeping between min_area and max_area of the area.

    Follows torchvision's ``RandomResizedCrop.get_params``: draw the area fraction uniformly and the aspect
    ratio log-uniformly, and keep the first of ``MAX_TRIES`` boxes that fits. Two changes: a box must keep
    the area within bounds after rounding to whole pixels, and the fallback (long, thin images) is a centre
    crop of the middle of the area range rather than the whole image, which would corrupt nothing.
    Images of a few pixels fall back to the closest whole-pixel box, at least one pixel.
    """
    _check_area(min_area, max_area)
    if width < 1 or height < 1:
        raise ValueError(f"Image size must be at least 1x1, got {width}x{height}.")
    area = width * height
    lowest, highest = math.ceil(min_area * area), math.floor(max_area * area)
    log_low, log_high = (math.log(r) for r in ASPECT_RATIOS)
    for _ in range(MAX_TRIES):
        target = area * rng.uniform(min_area, max_area)
        ratio = math.exp(rng.uniform(log_low, log_high))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height and lowest <= w * h <= highest:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    return _centre_box(width, height, area * (min_area + max_area) / 2)


def corrupt_image(
    image: Image.Image, *, seed: int, min_area: float = MIN_AREA, max_area: float = MAX_AREA
) -> Image.Image:
    """Return mDPO's corrupted copy of ``image``: a seeded random crop resized (bicubic) to the original size.

    The same image and seed always give the same pixels; the mode and size are kept.
    """
    box = crop_box(image.width, image.height, random.Random(seed), min_area, max_area)
    return image.resize(image.size, RESAMPLE, box=box)


def corrupt_image_bytes(data: bytes, *, seed: int, format: str = "PNG") -> bytes:
    """Return the encoded corrupted image of the encoded ``data``, for export packages that store bytes."""
    Image.init()  # registers every plugin, so SAVE lists all the formats Pillow can write
    if format.upper() not in Image.SAVE:
        raise ValueError(f"format must be one Pillow can write ({', '.join(sorted(Image.SAVE))}), got {format!r}.")
    with Image.open(io.BytesIO(data)) as image:
        corrupted = corrupt_image(image, seed=seed)
    out = io.BytesIO()
    corrupted.save(out, format=format)
    return out.getvalue()
