"""The shapes encoder (rewardlab.shapes) on scenes from a renderer unlike the synthetic generator's.

A tiny renderer below draws what other renderers do: gradient, noisy, textured and dark backgrounds,
anti-aliased edges, hollow and outlined shapes, overlaps, more shape kinds, other sizes and image modes.
Each test reads the tokens the way the reward model's heads need them: one object token per drawn shape,
its colour name, its centre.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from rewardlab.shapes import GEOMETRY, PALETTE, ShapesEncoder, shape_tokens

Style = Literal["filled", "hollow", "outlined"]
COLOUR_NAMES = list(PALETTE)
# Another renderer's colours: near the basic colour terms, none equal to a prototype of rewardlab.shapes.
COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 150, 50),
    "blue": (30, 60, 200),
    "yellow": (250, 210, 0),
    "purple": (130, 40, 170),
    "orange": (250, 130, 0),
    "pink": (245, 150, 200),
    "brown": (130, 80, 30),
    "gray": (120, 120, 120),
    "black": (10, 10, 10),
    "white": (255, 255, 255),
}
OUTLINE = (20, 20, 20)
SUPERSAMPLE = 4  # anti-aliased scenes are drawn this much larger, then LANCZOS-downsampled
LIGHT, DARK, MID, PAPER = (248, 248, 245), (25, 25, 35), (165, 170, 180), (225, 222, 212)
TEXTURE = 24  # levels above and below the base of stripes and checks: low contrast
NOISE = 12  # standard deviation of the noisy background, levels
GRAIN = 20  # ... of the grainy one: 1 pixel in 8 is over 40 levels off, the v1 foreground threshold
MOTTLE = 24  # ... of the mottled one, noise smoothed over MOTTLE_SIZE pixels: blobs, not specks
MOTTLE_SIZE = 4
DOT = 45  # levels darker, 3 x 3 pixels every 8
BACKGROUNDS = ("flat", "gradient", "noise", "grain", "mottled", "stripes", "checks", "dots", "dark", "mid")
SIZES = ((48, 48), (96, 96), (200, 200), (160, 96), (72, 120))


@dataclass(frozen=True)
class Drawn:
    """One shape as the test renderer draws it; x, y, size are fractions of the image."""

    kind: str
    colour: str
    x: float
    y: float
    size: float = 0.22  # of the shorter side
    style: Style = "filled"
    line: float | None = None  # outline width over the radius: 1/3 hollow, 1/6 outlined if None


def _points(kind: str, x: float, y: float, r: float) -> list[tuple[float, float]]:
    """Return the polygon of a shape of radius r centred at (x, y)."""

    def ring(corners: int, radius: float, turn: float) -> list[tuple[float, float]]:
        angles = [turn + 2 * math.pi * k / corners for k in range(corners)]
        return [(x + radius * math.cos(a), y + radius * math.sin(a)) for a in angles]

    if kind == "square":
        return [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    if kind == "triangle":
        return [(x, y - r), (x + r, y + r), (x - r, y + r)]
    if kind == "diamond":
        return ring(4, r, -math.pi / 2)
    if kind == "hexagon":
        return ring(6, r, 0.0)
    if kind == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, r * 0.45, -math.pi / 2 + math.pi / 5)
        return [point for pair in zip(outer, inner, strict=True) for point in pair]
    if kind == "cross":
        a = r * 0.35
        return [
            (x - a, y - r), (x + a, y - r), (x + a, y - a), (x + r, y - a), (x + r, y + a), (x + a, y + a),
            (x + a, y + r), (x - a, y + r), (x - a, y + a), (x - r, y + a), (x - r, y - a), (x - a, y - a),
        ]  # fmt: skip
    raise ValueError(f"Expected a polygon kind, got {kind!r}.")


def _draw(draw: ImageDraw.ImageDraw, shape: Drawn, width: int, height: int) -> None:
    x, y, r = shape.x * width, shape.y * height, shape.size * min(width, height) / 2
    colour = COLOURS[shape.colour]
    share = shape.line or (1 / 3 if shape.style == "hollow" else 1 / 6)
    line = max(3 if shape.style == "hollow" else 2, round(r * share))
    fill = None if shape.style == "hollow" else colour
    outline = {"filled": None, "hollow": colour, "outlined": OUTLINE}[shape.style]
    if shape.kind in ("circle", "ellipse"):
        rx = r if shape.kind == "circle" else r * 1.5
        draw.ellipse((x - rx, y - r, x + rx, y + r), fill=fill, outline=outline, width=line)
    else:
        draw.polygon(_points(shape.kind, x, y, r), fill=fill, outline=outline, width=line)


def _background(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Return a float RGB background [height, width, 3] at the final size."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.array({"dark": DARK, "mid": MID, "mottled": PAPER}.get(kind, LIGHT), dtype=np.float64)
    image = np.broadcast_to(base, (height, width, 3)).copy()
    if kind == "gradient":  # cream to a mid slate, diagonally: up to 110 levels apart
        t = ((xs / width + ys / height) / 2)[..., None]
        image = (1 - t) * np.array([250, 245, 230]) + t * np.array([140, 160, 200])
    elif kind in ("noise", "grain"):
        image += rng.normal(0, NOISE if kind == "noise" else GRAIN, image.shape)
    elif kind == "mottled":
        blobs = ndimage.uniform_filter(rng.normal(0, 1, (height, width, 1)), size=(MOTTLE_SIZE, MOTTLE_SIZE, 1))
        image += blobs / blobs.std() * MOTTLE
    elif kind == "stripes":
        image += np.where((xs + ys) // 3 % 2, TEXTURE, -TEXTURE)[..., None]
    elif kind == "checks":
        image += np.where((xs // 4 + ys // 4) % 2, TEXTURE, -TEXTURE)[..., None]
    elif kind == "dots":
        image -= np.where((xs % 8 < 3) & (ys % 8 < 3), DOT, 0)[..., None]
    return image


def render(
    shapes: list[Drawn],
    size: tuple[int, int] = (96, 96),
    background: str = "flat",
    antialias: bool = False,
    seed: int = 0,
) -> Image.Image:
    """Draw `shapes` over `background`; anti-aliased means drawn SUPERSAMPLE times larger, then
    LANCZOS-downsampled, as vector renderers do."""
    width, height = size
    scale = SUPERSAMPLE if antialias else 1
    layer = Image.new("RGBA", (width * scale, height * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for shape in shapes:
        _draw(draw, shape, width * scale, height * scale)
    if antialias:
        layer = layer.resize(size, Image.Resampling.LANCZOS)
    pixels = _background(background, width, height, np.random.default_rng(seed))
    alpha = np.asarray(layer, dtype=np.float64)[..., 3:] / 255
    pixels = (1 - alpha) * pixels + alpha * np.asarray(layer, dtype=np.float64)[..., :3]
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def objects(tokens: np.ndarray) -> np.ndarray:
    """Return the object tokens (present, not global), left to right."""
    found = tokens[1:][tokens[1:, 0] == 1]
    return found[np.argsort(found[:, column("cx")])]


def column(name: str) -> int:
    return 2 + len(PALETTE) + GEOMETRY.index(name)


def colour_names(found: np.ndarray) -> list[str]:
    return [COLOUR_NAMES[int(np.argmax(token[2 : 2 + len(PALETTE)]))] for token in found]


# Scenes whose shapes are left to right, so the expected colours read in order of x.
ROW = [Drawn("circle", "red", 0.2, 0.5), Drawn("square", "blue", 0.5, 0.45), Drawn("triangle", "green", 0.8, 0.55)]
KINDS = [
    Drawn("star", "yellow", 0.16, 0.3, 0.28),
    Drawn("diamond", "purple", 0.5, 0.28, 0.26),
    Drawn("cross", "orange", 0.84, 0.3, 0.28),
    Drawn("hexagon", "pink", 0.28, 0.74, 0.26),
    Drawn("ellipse", "brown", 0.72, 0.74, 0.22),
]
HOLLOW = [
    Drawn("square", "blue", 0.2, 0.5, 0.3, "hollow"),
    Drawn("circle", "red", 0.5, 0.5, 0.24),
    Drawn("circle", "green", 0.8, 0.5, 0.3, "hollow"),
]
OUTLINED = [Drawn("circle", "red", 0.28, 0.5, 0.34, "outlined"), Drawn("square", "yellow", 0.72, 0.5, 0.3, "outlined")]
# A red square whose corner a blue circle covers, and a yellow triangle apart.
OVERLAP = [
    Drawn("square", "red", 0.25, 0.4, 0.32),
    Drawn("circle", "blue", 0.45, 0.58, 0.3),
    Drawn("triangle", "yellow", 0.8, 0.5, 0.26),
]
NEUTRAL = [Drawn("square", "black", 0.2, 0.5), Drawn("circle", "gray", 0.5, 0.5), Drawn("diamond", "white", 0.8, 0.5)]
SCENES = {"row": ROW, "kinds": KINDS, "hollow": HOLLOW, "outlined": OUTLINED, "overlap": OVERLAP}
# Cut by the image's edge, the two squares cover about a third of its border pixels.
EDGE = [
    Drawn("square", "red", 0.12, 0.0, 0.5),
    Drawn("circle", "blue", 0.5, 0.5, 0.26),
    Drawn("square", "green", 1.0, 0.7, 0.5),
]


def expected_colours(shapes: list[Drawn]) -> list[str]:
    return [shape.colour for shape in sorted(shapes, key=lambda shape: shape.x)]


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("background", BACKGROUNDS)
@pytest.mark.parametrize("scene", list(SCENES))
def test_one_token_per_drawn_shape_with_its_colour_left_to_right(scene, background, antialias):
    shapes = SCENES[scene]
    found = objects(shape_tokens(render(shapes, background=background, antialias=antialias)))
    assert colour_names(found) == expected_colours(shapes)


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("scene", list(SCENES))
def test_image_size_and_aspect_ratio_do_not_change_what_is_found(scene, size, antialias):
    shapes = SCENES[scene]
    found = objects(shape_tokens(render(shapes, size=size, background="gradient", antialias=antialias)))
    assert colour_names(found) == expected_colours(shapes)
    # centres are fractions of the width whatever the size: within 4 % of where they were drawn
    drawn = sorted(shape.x for shape in shapes)
    assert found[:, column("cx")] == pytest.approx(drawn, abs=0.04)


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("background", BACKGROUNDS)
def test_backgrounds_alone_give_no_objects(background, antialias):
    tokens = shape_tokens(render([], size=(120, 96), background=background, antialias=antialias))
    assert not (tokens[1:, 0] == 1).any()
    assert tokens[0, column("area")] < 0.1  # under 1 % of the image taken for foreground


@pytest.mark.parametrize("background", ["flat", "gradient", "dark"])
@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
def test_hollow_shapes_are_one_hollow_object_and_filled_ones_are_not(background, antialias):
    found = objects(shape_tokens(render(HOLLOW, background=background, antialias=antialias)))
    hollow = found[:, column("hollow")]
    assert colour_names(found) == ["blue", "red", "green"]
    assert hollow[[0, 2]] == pytest.approx([0.4, 0.4], abs=0.2)  # a thick ring: about half hole
    assert hollow[1] == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("line", [1 / 6, 1 / 3], ids=["thin", "thick"])  # thick: as much outline as fill
def test_a_dark_outlined_red_circle_is_one_filled_red_object(line, antialias):
    circle = Drawn("circle", "red", 0.5, 0.5, 0.5, "outlined", line)
    tokens = shape_tokens(render([circle], antialias=antialias))
    (circle,) = objects(tokens)
    assert colour_names([circle]) == ["red"]
    assert circle[column("hollow")] == pytest.approx(0.0, abs=0.02)
    assert circle[column("fill")] == pytest.approx(math.pi / 4, abs=0.05)  # the outline is part of it


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("kind", ["triangle", "diamond", "hexagon"])
def test_small_outlined_shapes_are_coloured_by_their_small_fill(kind, antialias):
    # At 48 px a 2 px outline leaves these 8 px wide shapes a fill of a few pixels.
    shapes = [Drawn(kind, "orange", 0.3, 0.5, 0.16, "outlined"), Drawn(kind, "blue", 0.7, 0.5, 0.18, "outlined")]
    image = render(shapes, size=(48, 48), antialias=antialias)
    assert colour_names(objects(shape_tokens(image))) == ["orange", "blue"]


@pytest.mark.parametrize("size", [(48, 48), (200, 200)], ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("background", ["flat", "gradient", "noise", "dark"])
def test_shapes_cut_by_the_edge_do_not_hide_the_background(background, size):
    image = render(EDGE, size=size, background=background, antialias=True)
    assert colour_names(objects(shape_tokens(image))) == expected_colours(EDGE)


@pytest.mark.parametrize("background", ["flat", "gradient", "dark", "stripes"])
def test_neutral_shapes_are_found_where_they_contrast(background):
    light = background != "dark"
    shapes = [shape for shape in NEUTRAL if shape.colour != ("white" if light else "black")]
    image = render(shapes, background=background, antialias=True)
    assert colour_names(objects(shape_tokens(image))) == expected_colours(shapes)


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
def test_gray_black_and_white_on_a_mid_gray_background(antialias):
    image = render(NEUTRAL, background="mid", antialias=antialias)  # the gray circle is 45-60 levels off it
    assert colour_names(objects(shape_tokens(image))) == ["black", "gray", "white"]


DESCRIPTORS = ("fill", "octagon_fill", "compactness", "elongation", "hollow")


def descriptors(kind: str, size: tuple[int, int] = (96, 96), antialias: bool = False) -> dict[str, float]:
    (token,) = objects(shape_tokens(render([Drawn(kind, "blue", 0.5, 0.5, 0.6)], size=size, antialias=antialias)))
    return {name: float(token[column(name)]) for name in DESCRIPTORS}


def test_shape_descriptors_tell_kinds_apart():
    found = {kind: descriptors(kind) for kind in ("circle", "square", "star", "cross", "ellipse", "diamond")}
    assert found["circle"]["compactness"] > 0.9 and found["circle"]["elongation"] > 0.95
    assert found["star"]["octagon_fill"] < 0.55 and found["cross"]["octagon_fill"] < 0.85
    assert found["square"]["octagon_fill"] > 0.95 and found["diamond"]["octagon_fill"] > 0.9
    assert found["diamond"]["fill"] == pytest.approx(0.5, abs=0.05)  # a square turned 45°: half its box
    assert found["star"]["compactness"] < 0.5 and found["cross"]["compactness"] < 0.85
    assert found["ellipse"]["elongation"] == pytest.approx(1 / 1.5, abs=0.05)
    assert all(0.0 <= value <= 1.3 for kind in found.values() for value in kind.values())


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("size", [(48, 48), (200, 200)], ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("kind", ["triangle", "star", "hexagon", "ellipse"])
def test_shape_descriptors_do_not_depend_on_size_or_anti_aliasing(kind, size, antialias):
    assert descriptors(kind, size, antialias) == pytest.approx(descriptors(kind), abs=0.06)


def encode_png(image: Image.Image) -> np.ndarray:
    """Return the tokens of `image` written as a PNG and read back, as the encoder meets uploads."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ShapesEncoder().encode([buffer.getvalue()])[0]


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA"])
def test_transparent_pngs_are_seen_over_white(mode):
    pixels = np.asarray(render(ROW, antialias=True).convert("RGBA")).copy()
    background = (pixels[..., :3] == LIGHT).all(-1)
    # Transparent pixels hold whatever colour (here noise): only their alpha says they are background.
    pixels[background] = np.random.default_rng(0).integers(0, 256, (background.sum(), 4)) * [1, 1, 1, 0]
    image = Image.fromarray(pixels.astype(np.uint8), "RGBA")
    image = image.quantize(32, method=Image.Quantize.FASTOCTREE) if mode == "P" else image.convert(mode)
    found = objects(encode_png(image))
    assert len(found) == len(ROW)
    if mode != "LA":  # gray levels name no hue
        assert colour_names(found) == expected_colours(ROW)


@pytest.mark.parametrize("scene", list(SCENES))
def test_a_dithered_palette_png_gives_the_same_objects(scene):
    image = render(SCENES[scene], antialias=True).convert("P")  # web palette, Floyd-Steinberg dithering
    assert colour_names(objects(encode_png(image))) == expected_colours(SCENES[scene])


@pytest.mark.parametrize("antialias", [False, True], ids=["aliased", "antialiased"])
@pytest.mark.parametrize("line", [1, 2, 3])
def test_thin_outlines_are_one_hollow_object_each(line, antialias):
    scale = SUPERSAMPLE if antialias else 1
    image = Image.new("RGB", (96 * scale, 96 * scale), LIGHT)
    draw = ImageDraw.Draw(image)
    draw.ellipse([20 * scale, 20 * scale, 60 * scale, 60 * scale], outline=COLOURS["blue"], width=line * scale)
    draw.rectangle([70 * scale, 30 * scale, 90 * scale, 50 * scale], outline=COLOURS["red"], width=line * scale)
    found = objects(shape_tokens(image.resize((96, 96), Image.Resampling.LANCZOS)))
    assert colour_names(found) == ["blue", "red"]
    assert (found[:, column("hollow")] > 0.4).all()


@pytest.mark.parametrize(("colour", "background"), [("brown", "flat"), ("green", "noise"), ("orange", "dark")])
def test_small_thin_rings_are_named_by_their_colour_not_their_fringe(colour, background):
    # At 48 px anti-aliased, a 3 px ring is mostly fringe: mixes of its colour and the background.
    shapes = [Drawn("ellipse", colour, 0.3, 0.5, 0.2, "hollow"), Drawn("circle", colour, 0.7, 0.5, 0.14, "hollow")]
    image = render(shapes, size=(48, 48), background=background, antialias=True)
    assert colour_names(objects(shape_tokens(image))) == [colour, colour]


def test_same_coloured_shapes_that_touch_are_one_object():
    touching = [Drawn("square", "red", 0.35, 0.5, 0.3), Drawn("circle", "red", 0.6, 0.5, 0.3)]
    apart = [Drawn("square", "red", 0.25, 0.5, 0.3), Drawn("circle", "red", 0.75, 0.5, 0.3)]
    assert len(objects(shape_tokens(render(touching, antialias=True)))) == 1  # documented limit
    assert len(objects(shape_tokens(render(apart, antialias=True)))) == 2


def test_the_encoder_version_changed_with_the_token_layout():
    assert ShapesEncoder.name == "image:shapes:v2"
    assert ShapesEncoder.shape == (13, 2 + len(PALETTE) + len(GEOMETRY))
    assert GEOMETRY[-1] == "count"  # the global token's object count stays the last column
