"""The built-in image encoder: fixed colour and layout statistics of the objects in an image.

A head over raw pixels learns the text shortcut instead of the image (issue 3, "Pitfalls"): a few thousand
labels are too few to learn what an object, its colour, its count and its position are. This encoder
hands the heads those facts directly, as a set of tokens the response can attend to: one token per
connected region of one colour (its colour names, area, box, fill, centre), plus a global token (colour
shares, how much is foreground). Counting is then a sum over tokens and "left of" a comparison of
centres, which a small trained network does learn from a few thousand labels.

It suits flat-colour images (diagrams, charts, rendered scenes, the synthetic generator's shapes); for
photographs set a local CLIP or SigLIP tower instead (`rewardlab.encoders`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

# Prototype colours of the basic colour terms (Berlin & Kay), in sRGB.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "red": (225, 35, 35),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 30),
    "green": (40, 165, 60),
    "blue": (35, 80, 225),
    "purple": (140, 55, 180),
    "pink": (240, 140, 190),
    "brown": (140, 85, 40),
}
SIDE = 96  # images are resized to SIDE x SIDE before measuring
MAX_OBJECTS = 12
TOKENS = MAX_OBJECTS + 1  # the global token first
FOREGROUND_DISTANCE = 40  # max channel difference from the background colour that still counts as background
MIN_AREA = 12  # pixels; smaller regions are anti-aliasing or noise
SOFTNESS = 2500.0  # squared RGB distance scale of the soft colour names
# Token layout: [present, is_global, colour shares (len(PALETTE)), area, cx, cy, w, h, fill, dx, dy, count].
GEOMETRY = ("area", "cx", "cy", "w", "h", "fill", "dx", "dy", "count")
FEATURES = 2 + len(PALETTE) + len(GEOMETRY)
_PROTOTYPES = np.array(list(PALETTE.values()), dtype=np.float32)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _colour_names(pixels: np.ndarray) -> np.ndarray:
    """Return soft memberships [n, len(PALETTE)] of RGB pixels [n, 3] in the basic colour terms."""
    distance = ((pixels[:, None, :] - _PROTOTYPES[None]) ** 2).sum(-1)
    weights = np.exp(-(distance - distance.min(1, keepdims=True)) / SOFTNESS)
    return weights / weights.sum(1, keepdims=True)


def _pixel_names(rgb: np.ndarray) -> np.ndarray:
    """Return `_colour_names` of every pixel [H, W, 3] → [H, W, len(PALETTE)], computed once per distinct
    colour: a flat-colour image has a few dozen colours among its 9216 pixels."""
    flat = rgb.reshape(-1, 3)
    packed = flat.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    return _colour_names(flat[first])[inverse].reshape(*rgb.shape[:2], -1)


def _regions(foreground: np.ndarray, nearest: np.ndarray) -> list[np.ndarray]:
    """Return the masks of the connected one-colour regions of at least MIN_AREA pixels, largest first."""
    regions = []
    for colour in np.unique(nearest[foreground]):
        labelled, _ = ndimage.label(foreground & (nearest == colour), structure=_EIGHT_CONNECTED)
        areas = np.bincount(labelled.ravel())
        regions += [(areas[index], labelled == index) for index in np.flatnonzero(areas >= MIN_AREA) if index]
    return [mask for _, mask in sorted(regions, key=lambda region: -region[0])[:MAX_OBJECTS]]


def _background(rgb: np.ndarray) -> np.ndarray:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0)


def _object_token(mask: np.ndarray, names: np.ndarray) -> np.ndarray:
    """Measure one region: colour shares, area, centre, box, how much of its box it fills (shape)."""
    ys, xs = np.nonzero(mask)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    height, width = bottom - top, right - left
    cy, cx = ys.mean(), xs.mean()
    geometry = [
        len(ys) / SIDE**2 * 10,
        cx / SIDE,
        cy / SIDE,
        width / SIDE,
        height / SIDE,
        len(ys) / (width * height),
        (cx - (left + right - 1) / 2) / width,  # a triangle's centre of mass sits low in its box
        (cy - (top + bottom - 1) / 2) / height,
        0.0,
    ]
    return np.concatenate([[1.0, 0.0], names[mask].mean(0), geometry])


def shape_tokens(image: Image.Image) -> np.ndarray:
    """Return [TOKENS, FEATURES]: the global token, then objects by decreasing area, zero-padded."""
    rgb = np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.NEAREST), dtype=np.float32)
    foreground = np.abs(rgb - _background(rgb)).max(-1) > FOREGROUND_DISTANCE
    names = _pixel_names(rgb)
    regions = _regions(foreground, names.argmax(-1))
    tokens = np.zeros((TOKENS, FEATURES), dtype=np.float32)
    shares = names[foreground].mean(0) if foreground.any() else np.zeros(len(PALETTE))
    tokens[0, :2] = 1.0
    tokens[0, 2 : 2 + len(PALETTE)] = shares
    tokens[0, 2 + len(PALETTE)] = foreground.mean() * 10
    tokens[0, -1] = len(regions) / MAX_OBJECTS
    for row, region in enumerate(regions, start=1):
        tokens[row] = _object_token(region, names)
    return tokens


class ShapesEncoder:
    """Encoder protocol of `rewardlab.encoders` over `shape_tokens`; nothing to load, runs on the CPU."""

    name = "image:shapes:v1"
    shape = (TOKENS, FEATURES)
    dtype = "float16"

    def encode(self, contents: list[bytes]) -> np.ndarray:
        return np.stack([shape_tokens(Image.open(io.BytesIO(data))) for data in contents])
