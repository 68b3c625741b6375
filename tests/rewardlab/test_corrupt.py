"""mDPO's corrupted image: seeded, the same size and mode, and a crop of 1-20% of the area."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

from rewardlab.corrupt import MAX_AREA, MIN_AREA, corrupt_image, corrupt_image_bytes, crop_box

SEEDS = range(500)
SIZES = [(96, 96), (64, 48), (37, 211), (1000, 10)]  # the last is too thin for most boxes: the fallback


def _image(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Return a picture with structure everywhere, so that different crops give different pixels."""
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 4):
        for y in range(0, size[1], 4):
            draw.rectangle((x, y, x + 3, y + 3), fill=(x * 7 % 256, y * 11 % 256, (x + y) * 5 % 256))
    return image.convert(mode)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_same_seed_gives_same_bytes_and_another_seed_differs():
    data = _png(_image())
    first, again, other = (corrupt_image_bytes(data, seed=s) for s in (3, 3, 4))
    assert first == again
    assert first != other
    assert first != data


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_size_and_mode_are_kept(mode):
    image = _image(mode)
    corrupted = corrupt_image(image, seed=1)
    assert corrupted.size == image.size
    assert corrupted.mode == mode
    with Image.open(io.BytesIO(corrupt_image_bytes(_png(image), seed=1))) as decoded:
        assert (decoded.size, decoded.mode) == (image.size, mode)


def test_global_random_state_is_untouched():
    random.seed(0)
    expected = random.random()
    random.seed(0)
    corrupt_image(_image(), seed=5)
    assert random.random() == expected


@pytest.mark.parametrize("width,height", SIZES)
def test_crop_box_keeps_the_area_fraction_within_bounds(width, height):
    for seed in SEEDS:
        left, top, right, bottom = crop_box(width, height, random.Random(seed), MIN_AREA, MAX_AREA)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        assert MIN_AREA <= (right - left) * (bottom - top) / (width * height) <= MAX_AREA


def test_crop_box_varies_with_the_seed():
    boxes = {crop_box(96, 96, random.Random(seed)) for seed in SEEDS}
    assert len(boxes) > len(SEEDS) * 0.9


def test_crop_box_falls_back_to_a_centre_crop_when_no_box_fits():
    # 2000x10: a box of >= 1% (200 px) with aspect <= 4/3 is >= 12 px tall, so none fits in 10 rows.
    # The fallback keeps (0.01 + 0.20) / 2 = 10.5% of 20000 px = 2100 px: the full 10 rows x 210 columns,
    # centred: left = (2000 - 210) // 2 = 895.
    assert crop_box(2000, 10, random.Random(0)) == (895, 0, 1105, 10)


@pytest.mark.parametrize(
    "min_area,max_area",
    [(0.0, 0.2), (0.3, 0.2), (0.1, 1.5), (-0.1, 0.2)],
)
def test_invalid_area_fractions_are_rejected(min_area, max_area):
    with pytest.raises(ValueError, match=str(min_area)):
        corrupt_image(_image(), seed=0, min_area=min_area, max_area=max_area)


def test_empty_image_and_unknown_format_are_rejected():
    with pytest.raises(ValueError, match="0x0"):
        crop_box(0, 0, random.Random(0))
    with pytest.raises(ValueError, match="'NOPE'"):
        corrupt_image_bytes(_png(_image()), seed=0, format="NOPE")
