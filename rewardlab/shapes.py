"""The built-in image encoder: fixed colour, layout and shape statistics of the objects in an image.

A head over raw pixels learns the text shortcut instead of the image (issue 3, "Pitfalls"): a few thousand
labels are too few to learn what an object, its colour, its count and its position are. This encoder
hands the heads those facts directly, as a set of tokens the response can attend to: one token per
object (its colour names, area, box, centre and shape descriptors), plus a global token (colour shares,
how much is foreground, how many objects). Counting is then a sum over tokens and "left of" a comparison
of centres, which a small trained network does learn from a few thousand labels.

Version 1 assumed our own generator (flat light background, filled shapes, no anti-aliasing) and broke
on a user's renderer, so every step now tolerates what other renderers do:

- Large images are shrunk to about SIDE² pixels keeping their aspect ratio (so shape descriptors are not
  stretched); small ones are not enlarged, so anti-aliased fringes stay 1-2 pixels wide. The minimum
  object area is a share of the pixels. Transparent pixels are seen over white, as annotators saw them.
- The background is a per-channel plane fitted to the border, refitted without outliers so that shapes
  touching the edge do not tilt it: linear gradients and dark backgrounds cost nothing. A pixel is
  foreground when it is further from its local background, in contrast or in chroma, than MIN_CONTRAST
  (MIN_CHROMA) and than the border's residuals say noise or texture reach: noisy, mottled, striped,
  checked or dotted backgrounds raise the bar instead of becoming objects, and as most texture is gray,
  chroma keeps light colours (pink on paper) above it. Speckle (dithered palettes, heavy grain) gets a
  3 x 3 median first.
- Anti-aliased edges are mixed colours (pink between red and white, purple between red and blue). They
  form thin or tiny regions of their own colour, which join the solid region within FRINGE_REACH pixels
  without colouring it; colour shares weight pixels by contrast², so a fringe counts less.
- A dark ring whose hole is mostly foreground is an outline: ring and fill are one object, coloured by
  the fill. A ring around background is one hollow object ("hollow" > 0).

Limits, by design: touching shapes of the same colour are one object (nothing in flat colour separates
them); a shape cut in two by an occluder counts twice; shapes that differ from the background by less
than its texture or noise are not seen. Known misses: at 48 px an outlined star or cross, whose outline
covers most of its fill, reads as the outline's colour, and thin rings in heavy grain may be misnamed.

It suits flat-colour images (diagrams, charts, rendered scenes, the synthetic generator's shapes); for
photographs set a local CLIP or SigLIP tower instead (`rewardlab.encoders`).
"""

from __future__ import annotations

import functools
import io
import math

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
SIDE = 96  # larger images are shrunk to about SIDE x SIDE pixels (aspect ratio kept) before measuring
MAX_OBJECTS = 12
TOKENS = MAX_OBJECTS + 1  # the global token first
TRANSPARENT_BACKDROP = (255, 255, 255)  # transparent pixels show as a browser shows them to annotators
MIN_CONTRAST = 40  # max channel difference from the local background that still counts as background
MIN_CHROMA = 30  # ... of its chromatic part (the difference less its mean over channels)
# The border's residuals from the plane give the texture and noise level: their quartiles (without the
# outliers, shapes touching the border) set the bar at TEXTURE_SCALE x Q3 + TEXTURE_SPREAD x (Q3 - Q1). A
# two-level texture (stripes, checks: Q1 = Q3 = its amplitude) gets 1.25 x its amplitude; Gaussian noise
# (max over channels: Q1 = 0.9σ, Q3 = 1.7σ) gets 3.7σ, which 1 pixel in 1500 passes, alone: under MIN_AREA.
# A higher bar loses light shapes (pink on white) on textured backgrounds; a lower one lets smooth
# mottling through in blobs.
TEXTURE_SCALE = 1.25
TEXTURE_SPREAD = 2.0
BORDER_OUTLIER = 3.0  # border pixels further from a fit than this times the median are outliers
RIDGE = 1e-3  # keeps the plane's normal equations solvable for one-pixel-wide images
SPECKLE_SHARE = 0.01  # of the image: more lone foreground pixels than this call for a median filter
MIN_AREA_SHARE = 0.002  # of the image; smaller regions are anti-aliasing, noise or texture (18 px at SIDE²)
MIN_AREA_FLOOR = 12  # pixels, for the smallest images
THIN = 1.25  # area / rim pixels below this: a region at most 2 px wide, i.e. an anti-aliasing fringe
FRINGE_REACH = 3  # pixels; fringe within this distance of a solid region joins it
DARK_VALUE = 90  # max channel below which a pixel can be part of an outline: black, dark gray, not blue
OUTLINE_FILL = 0.5  # share of a dark ring's hole that must be foreground for the ring to be an outline
MIN_FILL = 4  # pixels: at 48 px a 2 px outline leaves a small triangle a fill this small
SOFTNESS = 2500.0  # squared RGB distance scale of the soft colour names
STEINER = math.pi / 4  # mean |cos| over orientations: crack length x STEINER estimates the perimeter
# Token layout: [present, is_global, colour shares (len(PALETTE)), *GEOMETRY]. The global token uses
# area (the share of the image objects cover x 10) and count, and its shares are over all objects' pixels;
# objects use the rest.
GEOMETRY = (
    "area",  # share of the image x 10
    "cx",  # centre of mass over the width
    "cy",  # ... over the height
    "w",  # box width over the image width
    "h",  # box height over the image height
    "fill",  # share of the box the object covers: 1 square, π/4 disc, ½ triangle
    "dx",  # centre of mass offset in the box over its width: a triangle's sits low
    "dy",
    "octagon_fill",  # filled area over its bounding octagon (a cheap convex hull): ½ star, 1 square
    "compactness",  # 4π area / perimeter² of the filled shape: 1 disc, ⅔ triangle, ⅖ star, 1.27 square
    "elongation",  # minor over major axis (second moments): 1 disc or square, 0.5 a 2:1 ellipse
    "hollow",  # share of the filled shape that is enclosed background: 0 filled, ~0.5 a thick ring
    "count",  # global token only: objects / MAX_OBJECTS
)
FEATURES = 2 + len(PALETTE) + len(GEOMETRY)
_PROTOTYPES = np.array(list(PALETTE.values()), dtype=np.float32)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_SHARES = slice(2, 2 + len(PALETTE))
_COLUMN = {name: 2 + len(PALETTE) + index for index, name in enumerate(GEOMETRY)}


def _working_rgb(image: Image.Image) -> np.ndarray:
    """Return the image as float RGB [H, W, 3], shrunk to about SIDE² pixels if larger, aspect ratio kept."""
    if image.has_transparency_data:
        backdrop = Image.new("RGBA", image.size, TRANSPARENT_BACKDROP)
        image = Image.alpha_composite(backdrop, image.convert("RGBA"))
    image = image.convert("RGB")
    scale = SIDE / math.sqrt(image.width * image.height)
    if scale < 1:
        # BOX averages: noise drops and edges blend into fringes the regions absorb. Smaller images are
        # not enlarged, so an anti-aliased fringe stays 1-2 pixels wide whatever the image size.
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def _min_area(pixels: int) -> int:
    return max(MIN_AREA_FLOOR, round(MIN_AREA_SHARE * pixels))


def _colour_names(pixels: np.ndarray) -> np.ndarray:
    """Return soft memberships [n, len(PALETTE)] of RGB pixels [n, 3] in the basic colour terms."""
    distance = ((pixels[:, None, :] - _PROTOTYPES[None]) ** 2).sum(-1)
    weights = np.exp(-(distance - distance.min(1, keepdims=True)) / SOFTNESS)
    return weights / weights.sum(1, keepdims=True)


def _pixel_names(pixels: np.ndarray) -> np.ndarray:
    """Return `_colour_names` of RGB pixels [n, 3], computed once per distinct colour: a flat-colour
    image has a few dozen colours among its thousands of pixels."""
    packed = pixels.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    return _colour_names(pixels[first])[inverse]


@functools.cache
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Return x and y over the width and height [H, W], the border pixels' (rows, columns) and their
    design rows [n, 3] (1, x, y) for the background plane."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xs / width, ys / height
    on_border = np.zeros((height, width), dtype=bool)
    on_border[[0, -1], :] = on_border[:, [0, -1]] = True
    border = np.nonzero(on_border)
    design = np.stack([np.ones(len(border[0]), np.float32), xs[border], ys[border]], 1)
    for array in (xs, ys, *border, design):
        array.flags.writeable = False
    return xs, ys, border, design


def _quantile(values: np.ndarray, q: float) -> float:
    k = min(len(values) - 1, int(q * len(values)))
    return float(np.partition(values, k)[k])


def _texture_bar(residual: np.ndarray, floor: float) -> float:
    """Return the distance from the background that border residuals [n] say noise or texture do not reach."""
    first, third = _quantile(residual, 0.25), _quantile(residual, 0.75)
    return max(floor, TEXTURE_SCALE * third + TEXTURE_SPREAD * (third - first))


def _contrast_and_chroma(deltas: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return the max channel distance of per-channel differences [R, G, B] from the background, and the
    max distance of their chromatic part (less their mean): zero for a lighter or darker gray."""
    mean = (deltas[0] + deltas[1] + deltas[2]) / 3
    contrast = np.maximum(np.maximum(np.abs(deltas[0]), np.abs(deltas[1])), np.abs(deltas[2]))
    chroma = np.maximum(np.maximum(np.abs(deltas[0] - mean), np.abs(deltas[1] - mean)), np.abs(deltas[2] - mean))
    return contrast, chroma


def _background_distance(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each pixel's max channel distance [H, W] from a plane fitted to the border, and whether it
    is foreground [H, W]: further than noise and texture reach in contrast or in chroma. Paper grain and
    mottling are gray, so a pink shape less contrasted than them still stands out by its chroma."""
    xs, ys, border, design = _grid(*rgb.shape[:2])
    colours = rgb[border]
    plane = np.zeros((3, 3))
    plane[0] = np.partition(colours, len(colours) // 2, axis=0)[len(colours) // 2]  # the median colour
    for step in range(3):  # from the median colour, refit twice without outliers (shapes at the border)
        residual = np.abs(colours - design @ plane).max(1)
        inliers = residual <= max(MIN_CONTRAST, BORDER_OUTLIER * _quantile(residual, 0.5))
        if step < 2:
            rows = design[inliers]
            plane = np.linalg.solve(rows.T @ rows + RIDGE * np.eye(3), rows.T @ colours[inliers])
    border_contrast, border_chroma = _contrast_and_chroma(list((colours - design @ plane)[inliers].T))
    # channel by channel: numpy is several times slower on a trailing axis of 3
    planes = plane.T.astype(np.float32)
    deltas = [rgb[..., channel] - (base + dx * xs + dy * ys) for channel, (base, dx, dy) in enumerate(planes)]
    contrast, chroma = _contrast_and_chroma(deltas)
    foreground = (contrast > _texture_bar(border_contrast, MIN_CONTRAST)) | (
        chroma > _texture_bar(border_chroma, MIN_CHROMA)
    )
    return contrast, foreground


def _speckled(foreground: np.ndarray) -> bool:
    """Return whether many foreground pixels have no 4-neighbour in the foreground: dithering (a palette
    image with error diffusion) or salt-and-pepper noise, which a 3 x 3 median removes."""
    alone = foreground.copy()
    alone[1:] &= ~foreground[:-1]
    alone[:-1] &= ~foreground[1:]
    alone[:, 1:] &= ~foreground[:, :-1]
    alone[:, :-1] &= ~foreground[:, 1:]
    return np.count_nonzero(alone) > SPECKLE_SHARE * foreground.size


def _foreground(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the RGB image [H, W, 3], median-filtered if speckled, and each pixel's distance [H, W] from
    the background: 0 on the background."""
    distance, foreground = _background_distance(rgb)
    if _speckled(foreground):  # seldom: the median costs more than all the rest
        rgb = ndimage.median_filter(rgb, size=(3, 3, 1))
        distance, foreground = _background_distance(rgb)
    distance[~foreground] = 0.0
    return rgb, distance


def _components(nearest: np.ndarray) -> np.ndarray:
    """Return a label map [H, W] of the connected one-colour components of the foreground, whose pixels
    hold their nearest colour (-1 elsewhere). A colour with too few pixels for a solid component is left
    at 0, with the background: its pixels are fringe."""
    labels = np.zeros(nearest.shape, dtype=np.int32)
    count = 0
    pixels = np.bincount(nearest.ravel() + 1)[1:]
    for colour in np.flatnonzero(pixels >= _min_area(nearest.size)):
        labelled, found = ndimage.label(nearest == colour, structure=_EIGHT_CONNECTED)
        inside = labelled > 0
        labels[inside] = labelled[inside] + count
        count += found
    return labels


def _solid(labels: np.ndarray) -> np.ndarray:
    """Return per label whether its component is solid: at least `_min_area` pixels and more than a fringe's
    width (anti-aliased edges give thin or tiny components of mixed colours)."""
    rim = np.zeros(labels.shape, dtype=bool)
    rim[[0, -1], :] = rim[:, [0, -1]] = True  # the image's edge bounds a component too
    vertical, horizontal = labels[1:] != labels[:-1], labels[:, 1:] != labels[:, :-1]
    rim[1:] |= vertical
    rim[:-1] |= vertical
    rim[:, 1:] |= horizontal
    rim[:, :-1] |= horizontal
    area = np.bincount(labels.ravel())
    rim_area = np.bincount(labels[rim], minlength=len(area))
    solid = (area >= _min_area(labels.size)) & (area >= THIN * rim_area)
    solid[0] = False
    return solid


def _grow(regions: np.ndarray, into: np.ndarray) -> np.ndarray:
    """Return `regions` with each `into` pixel within FRINGE_REACH (8-connected) of a region joined to it."""
    padded = np.pad(regions, 1)
    regions = padded[1:-1, 1:-1]  # a view: what joins is seen by the next step's neighbours
    pending = into & (regions == 0)
    for _ in range(FRINGE_REACH):
        if not pending.any():
            break
        rows = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
        near = np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:])
        joined = pending & (near > 0)
        regions[joined] = near[joined]
        pending &= ~joined
    return regions.copy()


def _filled(mask: np.ndarray) -> np.ndarray:
    """Return `mask` with its holes filled: what no 4-connected path of other pixels links to the edge.
    One labelling, where `ndimage.binary_fill_holes` dilates once per pixel of depth."""
    height, width = mask.shape
    outside = np.ones((height + 2, width + 2), dtype=bool)
    outside[1:-1, 1:-1] = ~mask
    labels, count = ndimage.label(outside)
    return mask if count == 1 else labels[1:-1, 1:-1] != labels[0, 0]


def _outlined(foreground: np.ndarray, dark: np.ndarray) -> list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """Return (box, shape, fill) crops of each dark ring whose hole is mostly foreground: an outlined shape,
    whose colour is its fill's. A ring around background is a hollow shape and stays apart."""
    if not dark.any():
        return []
    rings, _ = ndimage.label(dark, structure=_EIGHT_CONNECTED)
    found = []
    for label, box in enumerate(ndimage.find_objects(rings), start=1):
        ring = rings[box] == label
        hole = _filled(ring) & ~ring
        fill = hole & foreground[box]
        if hole.sum() >= MIN_FILL and fill.sum() >= OUTLINE_FILL * hole.sum():
            light = fill & ~dark[box]
            found.append((box, ring | fill, light if light.any() else fill))
    return found


def _regions(foreground: np.ndarray, labels: np.ndarray, dark: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the region map and the colour map, whose label marks the pixels that name a region's colour.

    Solid components and outlined shapes are the seeds; fringes within FRINGE_REACH join them without
    colouring them; whatever fringe is left is grouped by connectivity (a lone thin outline, a shape whose
    colour sits between two names)."""
    seeds = np.where(_solid(labels)[labels], labels, 0)
    colours = seeds.copy()
    next_label = labels.max() + 1
    for box, shape, fill in _outlined(foreground, dark):
        seeds[box][shape] = next_label
        colours[box][shape] = 0
        colours[box][fill] = next_label
        next_label += 1
    regions = _grow(seeds, foreground)
    left_over = foreground & (regions == 0)
    if left_over.any():
        left, _ = ndimage.label(left_over, structure=_EIGHT_CONNECTED)
        regions[left_over] = colours[left_over] = left[left_over] + next_label
    area = np.bincount(regions.ravel())
    regions[area[regions] < _min_area(regions.size)] = 0
    return regions, colours


def _octagon_fill(xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> float:
    """Return the share of its bounding octagon (over pixel corners) that a shape with pixels (xs, ys)
    fills: its box [height x width] with the corners cut along x + y and x - y. Exact for convex shapes
    with edges at multiples of 45°, near the convex hull otherwise, at a fraction of its cost."""
    sums, differences = xs + ys, xs - ys
    # Corner triangles' legs: a pixel's corners reach x ± y ± 1, the box's corners sit at half pixels.
    cuts = (
        sums.min(),
        height + width - 2 - sums.max(),
        width - 1 - differences.max(),
        height - 1 + differences.min(),
    )
    octagon = height * width - sum(max(float(cut), 0.0) ** 2 for cut in cuts) / 2
    return len(xs) / max(octagon, 1.0)


def _compactness(filled: np.ndarray, area: int) -> float:
    """Return 4π area / perimeter², the perimeter being the crack length between pixels times STEINER."""
    cracks = np.count_nonzero(filled[1:] != filled[:-1]) + np.count_nonzero(filled[:, 1:] != filled[:, :-1])
    cracks += np.count_nonzero(filled[[0, -1]]) + np.count_nonzero(filled[:, [0, -1]])  # the box's edges
    return 4 * math.pi * area / (cracks * STEINER) ** 2


def _elongation(xs: np.ndarray, ys: np.ndarray) -> float:
    """Return the minor over the major axis (square roots of the second moments' eigenvalues)."""
    dx, dy = xs - xs.mean(), ys - ys.mean()
    pixel = 1 / 12  # variance of a uniform unit pixel, so one-pixel lines are not degenerate
    vx, vy, cov = dx @ dx / len(dx) + pixel, dy @ dy / len(dy) + pixel, dx @ dy / len(dx)
    spread = math.sqrt(((vx - vy) / 2) ** 2 + cov**2)
    return math.sqrt(max((vx + vy) / 2 - spread, 0.0) / ((vx + vy) / 2 + spread))


def _shape_descriptors(filled: np.ndarray) -> list[float]:
    """Return octagon fill, compactness and elongation of a filled mask (its box crop)."""
    ys, xs = np.nonzero(filled)
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    return [_octagon_fill(xs, ys, *filled.shape), _compactness(filled, len(xs)), _elongation(xs, ys)]


def _colour_shares(names: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Return the mean colour names [colours] of pixels [n, colours], weighted by contrast²: a fringe
    pixel, a mix of the colour and the background, is closer to the background than the colour is."""
    weights = contrast**2
    return weights @ names / weights.sum()


def _geometry(box: tuple[slice, slice], mask: np.ndarray, filled: np.ndarray, distance: np.ndarray) -> list[float]:
    """Return GEOMETRY of one object: `mask` and `filled` (its holes filled) are crops at `box` of the
    distance map [H, W], which is 0 on the background."""
    height, width = distance.shape
    ys, xs = np.nonzero(mask)
    top, left = box[0].start, box[1].start
    box_height, box_width = mask.shape
    cy, cx = ys.mean(), xs.mean()
    enclosed_background = filled & ~mask & (distance[box] == 0)
    return [
        len(ys) / (height * width) * 10,
        (left + cx + 0.5) / width,
        (top + cy + 0.5) / height,
        box_width / width,
        box_height / height,
        len(ys) / (box_width * box_height),
        (cx - (box_width - 1) / 2) / box_width,
        (cy - (box_height - 1) / 2) / box_height,
        *_shape_descriptors(filled),
        enclosed_background.sum() / filled.sum(),
        0.0,
    ]


def shape_tokens(image: Image.Image) -> np.ndarray:
    """Return [TOKENS, FEATURES]: the global token, then objects by decreasing area, zero-padded."""
    rgb, distance = _foreground(_working_rgb(image))
    foreground = distance > 0
    pixels = rgb[foreground]
    names = _pixel_names(pixels)  # [foreground pixels, colours]; `row` maps a pixel to its names
    row = np.zeros(foreground.shape, dtype=np.int64)
    row[foreground] = np.arange(len(pixels))
    nearest, dark = np.full(foreground.shape, -1), np.zeros(foreground.shape, dtype=bool)
    nearest[foreground] = names.argmax(-1)
    dark[foreground] = pixels.max(1) < DARK_VALUE
    regions, colours = _regions(foreground, _components(nearest), dark)
    covered = regions > 0  # not `foreground`: texture dots and noise specks are not content
    holes = _filled(covered) & ~covered  # one labelling spares filling each object that has none
    boxes = ndimage.find_objects(regions)
    areas = np.bincount(regions.ravel())
    order = [label for label in np.argsort(-areas[1:], kind="stable") + 1 if boxes[label - 1] is not None]
    tokens = np.zeros((TOKENS, FEATURES), dtype=np.float32)
    tokens[0, :2] = 1.0
    tokens[0, _SHARES] = names[row[covered]].mean(0) if covered.any() else 0.0
    tokens[0, _COLUMN["area"]] = covered.mean() * 10
    tokens[0, _COLUMN["count"]] = min(len(order), MAX_OBJECTS) / MAX_OBJECTS
    for token, label in enumerate(order[:MAX_OBJECTS], start=1):
        box = boxes[label - 1]
        mask = regions[box] == label
        core = mask & (colours[box] == label)  # e.g. the fill inside an outline, not the fringe
        core = core if core.any() else mask
        tokens[token, :2] = 1.0, 0.0
        tokens[token, _SHARES] = _colour_shares(names[row[box][core]], distance[box][core])
        filled = _filled(mask) if holes[box].any() else mask
        tokens[token, _SHARES.stop :] = _geometry(box, mask, filled, distance)
    return tokens


class ShapesEncoder:
    """Encoder protocol of `rewardlab.encoders` over `shape_tokens`; nothing to load, runs on the CPU."""

    name = "image:shapes:v2"
    shape = (TOKENS, FEATURES)
    dtype = "float16"

    def encode(self, contents: list[bytes]) -> np.ndarray:
        return np.stack([shape_tokens(Image.open(io.BytesIO(data))) for data in contents])
