"""The pictures of the scene family (`rewardlab.scenes`): shapes, backgrounds, rendering and spatial truth.

A scene is a list of shapes with known kind, basic colour, shade, rendering, centre and size, drawn in order
on a background; `relation_holds` is the one definition of "left of", "next to", ... that questions are built
from and tests check against. Masks come from the same drawing routine as the picture, so what the layout
checks (overlap, gaps) is what the image shows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from rewardlab.scene_text import Relation

RGB = tuple[int, int, int]
Rendering = Literal["filled", "outlined", "hollow"]
BackgroundKind = Literal["flat-light", "flat-dark", "gradient", "stripes", "noise", "checks", "dots"]
Label = tuple[str, str]  # (basic colour, kind): what a claim names and the truth is counted by

DIRECTIONS = ("across", "down", "diagonal")  # of gradients and stripes
DOT_RADIUS = 1
OUTLINE_RGB: RGB = (20, 20, 20)
OUTLINE_DIVISOR = 10  # an outlined shape's dark edge is size / 10 wide
HOLLOW_DIVISOR = 7  # a hollow shape's coloured edge is size / 7 wide: thick enough to name its colour, thin
# enough to leave a hole in a cross's arms (a third of its size wide)
MIN_HOLLOW_WIDTH = 2
AA_SCALE = 4  # anti-aliased scenes are drawn 4x larger and downsampled with LANCZOS
SIDE_GAP = 0.03  # "left of" needs this share of the shorter side between the boxes ...
SIDE_DOMINANCE = 0.6  # ... and an off-axis offset of at most 0.6 of the on-axis one
NEAR_GAP, FAR_GAP = 0.06, 0.25  # "next to": boxes at most 6% of the shorter side apart; "far": at least 25%
PIXEL_CENTRE = 0.5  # from the pixel's corner: where a scaled-up drawing puts a pixel's centre


# Geometry: each kind as a polygon (or ellipse) inside the unit box [-0.5, 0.5]^2.


def _regular(corners: int, radii: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """Return the points of a regular polygon (one radius) or star (alternating radii), first corner on top."""
    count = corners * len(radii)
    angles = [2 * math.pi * i / count - math.pi / 2 for i in range(count)]
    return tuple(
        (radii[i % len(radii)] * math.cos(a), radii[i % len(radii)] * math.sin(a)) for i, a in enumerate(angles)
    )


def _heart() -> tuple[tuple[float, float], ...]:
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    x, y = x / 34, (y - (y.max() + y.min()) / 2) / 34  # the curve spans 32 x 29 units: fit it in the unit box
    return tuple(zip(x.tolist(), y.tolist(), strict=True))


def _cross(arm: float = 1 / 6) -> tuple[tuple[float, float], ...]:
    """Return a plus sign with arms `2 * arm` wide: one quarter of the outline, turned four times."""
    quarter = ((-arm, -0.5), (arm, -0.5), (arm, -arm))
    turns = ((1, 0, 0, 1), (0, -1, 1, 0), (-1, 0, 0, -1), (0, 1, -1, 0))  # (x, y) -> (a x + b y, c x + d y)
    return tuple((a * x + b * y, c * x + d * y) for a, b, c, d in turns for x, y in quarter)


POLYGONS: dict[str, tuple[tuple[float, float], ...]] = {
    "square": ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)),
    "triangle": ((0.0, -0.5), (0.5, 0.5), (-0.5, 0.5)),
    "diamond": ((0.0, -0.5), (0.38, 0.0), (0.0, 0.5), (-0.38, 0.0)),  # narrower than a turned square
    "cross": _cross(),
    "star": _regular(5, (0.5, 0.2)),
    "hexagon": _regular(6, (0.5,)),
    "heart": _heart(),
}
ELLIPSE_HALF_HEIGHTS = {"circle": 0.5, "ellipse": 0.3}
EXTENTS: dict[str, tuple[float, float, float, float]] = {
    **{kind: (-0.5, -h, 0.5, h) for kind, h in ELLIPSE_HALF_HEIGHTS.items()},
    **{
        k: (min(x for x, _ in p), min(y for _, y in p), max(x for x, _ in p), max(y for _, y in p))
        for k, p in POLYGONS.items()
    },
}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str  # the basic colour term: the truth every claim is checked against
    rgb: RGB
    rendering: Rendering
    x: int  # centre, pixels
    y: int
    size: int  # width of the unit box, pixels

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Return (left, top, right, bottom) of the drawn shape, pixels."""
        left, top, right, bottom, size = *EXTENTS[self.kind], self.size
        return self.x + left * size, self.y + top * size, self.x + right * size, self.y + bottom * size


def paints(shape: Shape, scale: int = 1) -> tuple[RGB | None, RGB | None, int]:
    """Return (fill, outline, outline width) of a shape's rendering, at `scale` times its size."""
    if shape.rendering == "hollow":
        return None, shape.rgb, max(MIN_HOLLOW_WIDTH, shape.size // HOLLOW_DIVISOR) * scale
    if shape.rendering == "outlined":
        return shape.rgb, OUTLINE_RGB, max(1, shape.size // OUTLINE_DIVISOR) * scale
    return shape.rgb, None, 1


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: Shape, scale: int, fill: Any, outline: Any, width: int, grow: int = 0
) -> None:
    """Draw `shape` `scale` times larger, `grow` pixels wider on each side."""
    size = (shape.size + 2 * grow) * scale
    cx, cy = ((v + PIXEL_CENTRE) * scale - PIXEL_CENTRE for v in (shape.x, shape.y))
    if shape.kind in ELLIPSE_HALF_HEIGHTS:
        half_height = ELLIPSE_HALF_HEIGHTS[shape.kind] * size
        box = (cx - size / 2, cy - half_height, cx + size / 2, cy + half_height)
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    else:
        draw.polygon(
            [(cx + u * size, cy + v * size) for u, v in POLYGONS[shape.kind]], fill=fill, outline=outline, width=width
        )


def shape_mask(shape: Shape, width: int, height: int, *, solid: bool = False, grow: int = 0) -> np.ndarray:
    """Return the pixels a shape paints (or, `solid`, covers with its interior) as a bool array."""
    image = Image.new("L", (width, height), 0)
    fill, outline, line = paints(shape)
    on = 255
    if solid:
        fill, outline = on, None
    draw_shape(ImageDraw.Draw(image), shape, 1, on if fill else None, on if outline else None, line, grow)
    return np.asarray(image) > 0


@dataclass(frozen=True)
class Background:
    kind: BackgroundKind
    tones: tuple[RGB, RGB]  # the base tone and the other end of the gradient, texture or noise
    period: int  # pixels between stripes, checks or dots
    direction: int  # of gradient and stripes: an index into DIRECTIONS
    seed: int  # of the noise

    def pixels(self, width: int, height: int) -> np.ndarray:
        """Return the background as a (height, width, 3) uint8 array."""
        base, other = (np.array(tone, dtype=float) for tone in self.tones)
        share = self._share(width, height).astype(float)[..., None]
        return np.rint(base + share * (other - base)).astype(np.uint8)

    def _share(self, width: int, height: int) -> np.ndarray:
        """Return, per pixel, how far from the base tone towards the other one it is (0..1)."""
        ys, xs = np.mgrid[0:height, 0:width]
        along, period = (xs, ys, xs + ys)[self.direction], self.period
        if self.kind == "gradient":
            return along / max(int(along.max()), 1)
        if self.kind == "stripes":
            return (along // period) % 2
        if self.kind == "checks":
            return (xs // period + ys // period) % 2
        if self.kind == "dots":
            return (xs % period - period // 2) ** 2 + (ys % period - period // 2) ** 2 <= DOT_RADIUS**2
        if self.kind == "noise":
            return np.random.default_rng(self.seed).random((height, width))
        return np.zeros((height, width))


@dataclass(frozen=True)
class Scene:
    """A canvas with known shapes, drawn in order (later on top): the truth every answer is checked against."""

    width: int
    height: int
    background: Background
    shapes: tuple[Shape, ...]
    antialias: bool = False

    def groups(self) -> Counter[Label]:
        return Counter((s.colour, s.kind) for s in self.shapes)

    def render(self) -> Image.Image:
        scale = AA_SCALE if self.antialias else 1
        image = Image.fromarray(self.background.pixels(self.width, self.height))
        if scale > 1:
            image = image.resize((self.width * scale, self.height * scale), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(image)
        for shape in self.shapes:
            draw_shape(draw, shape, scale, *paints(shape, scale))
        return image.resize((self.width, self.height), Image.Resampling.LANCZOS) if scale > 1 else image


def relation_holds(relation: Relation, a: Shape, b: Shape, width: int, height: int) -> bool:
    """Return whether "a <relation> b" is clearly true: a side needs a gap and a dominant axis, near/far a distance.

    "No" answers state the opposite relation, which must hold as clearly, so no answer is a judgement call.
    """
    side = min(width, height)
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    dx, dy = (bx0 + bx1 - ax0 - ax1) / 2, (by0 + by1 - ay0 - ay1) / 2
    across, down = abs(dy) <= SIDE_DOMINANCE * abs(dx), abs(dx) <= SIDE_DOMINANCE * abs(dy)
    gap = max(bx0 - ax1, ax0 - bx1, by0 - ay1, ay0 - by1)
    return bool(
        {
            "left": across and bx0 - ax1 >= SIDE_GAP * side,
            "right": across and ax0 - bx1 >= SIDE_GAP * side,
            "above": down and by0 - ay1 >= SIDE_GAP * side,
            "below": down and ay0 - by1 >= SIDE_GAP * side,
            "near": 0 <= gap <= NEAR_GAP * side,
            "far": gap >= FAR_GAP * side,
        }[relation]
    )
