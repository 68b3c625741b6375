"""A family of scene worlds for honest measurement: everything a reward model could overfit is drawn at random.

A reward model trained and scored on one generator (`rewardlab.synthetic`) looks good by learning that
generator: its phrasing, its palette, its verbosity shortcut, and then fails on other people's scenes. This
module draws scenes from a family of worlds. Every axis a model could memorise (object nouns, colour shades
and words, rendering, background, size, canvas, anti-aliasing, question and answer templates, numerals,
relation words, style shortcuts) is a pool of options split into training options and options reserved for
held-out variants (`AXES`). Train and tune on TRAIN_VARIANTS, report on HELD_OUT_VARIANTS: no held-out option
ever appears in a training variant, so each figure is measured on worlds the model has not seen.

Questions are drawn before their scenes (a count pair, a colour pair, a yes/no answer, a relation), so every
number, colour and yes/no is as likely in the faithful answer as in the hallucinated one and the text alone
gives nothing away. Both answers share one template and differ in one claim about the image; a style marker
goes to one of them, the faithful one with probability `style_p`, so the shortcut's strength is a setting.
Three random streams (content, style, labels) keep the scenes fixed while `style_p` or `prior_noise` change.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rewardlab.scene_draw import (
    DIRECTIONS,
    EXTENTS,
    NEAR_GAP,
    RGB,
    Background,
    BackgroundKind,
    Label,
    Rendering,
    Scene,
    Shape,
    paints,
    relation_holds,
    shape_mask,
)
from rewardlab.scene_text import (
    COLOUR_WORDS,
    HELD_COLOUR_WORDS,
    HELD_NOUNS,
    HELD_RELATION_PHRASES,
    HELD_TEMPLATES,
    NOUNS,
    OPPOSITE,
    PLAIN_FORM,
    RELATION_PHRASES,
    RELATIONS,
    STYLE_FORMS,
    TEMPLATES,
    TRAIN_COLOUR_WORDS,
    TRAIN_NOUNS,
    TRAIN_RELATION_PHRASES,
    TRAIN_TEMPLATES,
    Relation,
    Wording,
    styled,
)
from rewardlab.synthetic import (
    MAX_STRENGTH,
    MODELS,
    QTYPES,
    RESPONSE_IDS,
    HallucinationType,
    QType,
    Question,
    Streams,
    label_entry,
    package_parser,
    png_bytes,
    write_items,
)

SizeClass = Literal["small", "medium", "large"]

# Shades of the basic colour terms (Berlin & Kay), each well inside its category, so naming basic colours is
# fair but a memorised RGB is not; the last shade of each colour is kept for held-out variants.
SHADES: dict[str, tuple[RGB, ...]] = {
    "red": ((210, 30, 35), (235, 50, 45), (190, 20, 30)),
    "orange": ((245, 140, 25), (250, 120, 20), (235, 155, 45)),
    "yellow": ((240, 215, 30), (250, 230, 60), (230, 200, 20)),
    "green": ((40, 165, 60), (30, 135, 50), (85, 185, 70)),
    "blue": ((35, 80, 225), (30, 60, 190), (55, 115, 235)),
    "purple": ((140, 55, 180), (120, 40, 160), (160, 75, 205)),
    "pink": ((240, 140, 190), (250, 120, 180), (235, 150, 195)),
    "brown": ((140, 85, 40), (120, 70, 35), (160, 100, 55)),
    "gray": ((128, 128, 128), (110, 110, 110), (150, 150, 150)),
    "black": ((15, 15, 15), (35, 35, 35), (5, 5, 12)),
    "white": ((245, 245, 245), (255, 255, 255), (232, 234, 240)),
}
SHADE_RGB: dict[str, RGB] = {f"{c}/{i}": rgb for c, shades in SHADES.items() for i, rgb in enumerate(shades)}
SHADE_COLOUR: dict[str, str] = {shade: shade.split("/")[0] for shade in SHADE_RGB}
HELD_SHADE_INDEX = 2
LIGHT_TONES: tuple[RGB, ...] = ((245, 245, 240), (236, 240, 246), (248, 240, 228), (232, 236, 232))
DARK_TONES: tuple[RGB, ...] = ((28, 30, 36), (40, 40, 46), (24, 34, 30), (44, 34, 30))
MIN_CONTRAST = 100.0  # RGB distance every shape shade keeps from every background tone
TEXTURE_CONTRAST = 14  # stripes, checks and dots stay faint, so they never read as objects
NOISE_CONTRAST = 28
NOISE_SEEDS = 2**31
PERIOD_RANGE = (5, 12)  # pixels between stripes, checks or dots
SIZE_FRACTIONS: dict[SizeClass, tuple[float, float]] = {
    "small": (0.13, 0.18),
    "medium": (0.18, 0.25),
    "large": (0.25, 0.32),
}  # of the canvas's shorter side
MIN_SHAPE_PX = 8

MAX_SHAPES = 6
MAX_GROUPS, MAX_GROUP_COUNT = 3, 2  # a description names at most 3 groups of at most 2 shapes
COUNT_PAIRS = ((1, 2), (2, 3), (3, 4), (1, 3), (2, 4))  # (true, wrong) in either order, each equally likely
NEAR_MISS_P = 0.5  # existence scenes that hold an object sharing the asked colour or kind
DEFAULT_MAX_OVERLAP = 0.35  # no shape more than 35% covered, so counts stay answerable
MAX_OVERLAP_LIMIT = 0.5
SAME_COLOUR_GAP = 2  # pixels between shapes of one colour: touching ones would read as one
PLACE_TRIES, SPATIAL_TRIES, SCENE_TRIES = 40, 200, 100
HALF = 0.5

PRIOR_SOURCE = "scenes"
CLI_DESCRIPTION = "Write a RewardLab import package from the scene family, with held-out variants."


@dataclass(frozen=True)
class Axis:
    """One thing a model could memorise: the options training variants use, and those kept for held-out ones."""

    train: tuple[Any, ...]
    held: tuple[Any, ...]


TRAIN_KINDS = ("circle", "square", "triangle", "diamond", "cross", "ellipse")
HELD_KINDS = ("star", "hexagon", "heart")
AXES: dict[str, Axis] = {
    "kinds": Axis(TRAIN_KINDS, HELD_KINDS),
    "nouns": Axis(TRAIN_NOUNS, HELD_NOUNS),
    "colour_words": Axis(TRAIN_COLOUR_WORDS, HELD_COLOUR_WORDS),
    "numerals": Axis(("words",), ("digits",)),
    "relation_phrases": Axis(TRAIN_RELATION_PHRASES, HELD_RELATION_PHRASES),
    "templates": Axis(TRAIN_TEMPLATES, HELD_TEMPLATES),
    "renderings": Axis(("filled", "outlined"), ("hollow",)),
    "shades": Axis(
        tuple(s for s in SHADE_RGB if not s.endswith(f"/{HELD_SHADE_INDEX}")),
        tuple(s for s in SHADE_RGB if s.endswith(f"/{HELD_SHADE_INDEX}")),
    ),
    "backgrounds": Axis(("flat-light", "flat-dark", "gradient", "stripes"), ("noise", "checks", "dots")),
    "sizes": Axis(("small", "medium"), ("large",)),
    "canvases": Axis(((96, 96), (128, 128), (128, 96)), ((64, 64), (160, 120), (112, 160))),
    "antialias": Axis((False,), (True,)),
    "styles": Axis(("verbosity", "hedging"), ("politeness", "markdown")),
}


@dataclass(frozen=True)
class Variant:
    """One world of the family: the options it draws from on each axis of AXES (field names match)."""

    kinds: tuple[str, ...]
    nouns: tuple[str, ...]
    colour_words: tuple[str, ...]
    numerals: tuple[str, ...]
    relation_phrases: tuple[str, ...]
    templates: tuple[str, ...]
    renderings: tuple[Rendering, ...]
    shades: tuple[str, ...]
    backgrounds: tuple[BackgroundKind, ...]
    sizes: tuple[SizeClass, ...]
    canvases: tuple[tuple[int, int], ...]
    antialias: tuple[bool, ...]
    styles: tuple[str, ...]

    def __post_init__(self) -> None:
        for axis in fields(self):
            options, pool = getattr(self, axis.name), AXES[axis.name]
            unknown = [o for o in options if o not in pool.train + pool.held]
            if unknown or not options:
                raise ValueError(f"{axis.name} {list(options)!r} invalid; choose from {pool.train + pool.held!r}.")
        needs = {
            "nouns": (set(self.kinds), {NOUNS[n].kind for n in self.nouns}),
            "shades": ({COLOUR_WORDS[w] for w in self.colour_words}, {SHADE_COLOUR[s] for s in self.shades}),
            "relation_phrases": (set(RELATIONS), {RELATION_PHRASES[p] for p in self.relation_phrases}),
            "templates": ({(q, r) for q in QTYPES for r in ("prompt", "claim")}, set(map(_slot, self.templates))),
        }
        for name, (wanted, given) in needs.items():
            if wanted != given:
                raise ValueError(f"{name} must cover exactly {sorted(wanted)}, got {sorted(given)}.")

    @property
    def held_out(self) -> bool:
        """Return whether any axis uses an option kept for held-out variants."""
        return any(set(getattr(self, name)) & set(axis.held) for name, axis in AXES.items())

    @property
    def colours(self) -> tuple[str, ...]:
        named = {COLOUR_WORDS[word] for word in self.colour_words}
        return tuple(colour for colour in SHADES if colour in named)


def _slot(template_id: str) -> tuple[str, str]:
    return TEMPLATES[template_id].qtype, TEMPLATES[template_id].role


def _prefer_held(name: str, group: Callable[[Any], Any]) -> tuple[Any, ...]:
    """Return an axis's held-out options, plus the training ones of each group that has no held-out option."""
    axis = AXES[name]
    covered = {group(option) for option in axis.held}
    return axis.held + tuple(option for option in axis.train if group(option) not in covered)


_TRAINING = Variant(**{name: axis.train for name, axis in AXES.items()})
_NEW_WORDS: dict[str, Any] = {
    "nouns": tuple(n for n in _prefer_held("nouns", lambda n: NOUNS[n].kind) if NOUNS[n].kind in TRAIN_KINDS),
    "colour_words": _prefer_held("colour_words", COLOUR_WORDS.__getitem__),
    "numerals": AXES["numerals"].held,
    "relation_phrases": _prefer_held("relation_phrases", RELATION_PHRASES.__getitem__),
    "templates": AXES["templates"].held,
}
_NEW_LOOK: dict[str, Any] = {
    name: AXES[name].held for name in ("renderings", "shades", "backgrounds", "sizes", "canvases", "antialias")
}
_HELD_NOUN_KINDS = tuple(dict.fromkeys(NOUNS[n].kind for n in HELD_NOUNS))
VARIANTS: dict[str, Variant] = {
    "train-flat": replace(_TRAINING, backgrounds=("flat-light", "flat-dark"), renderings=("filled",)),
    "train-textured": replace(_TRAINING, backgrounds=("gradient", "stripes"), renderings=("outlined",)),
    "train-mixed": _TRAINING,
    "new-vocabulary": replace(_TRAINING, **_NEW_WORDS),
    "new-objects": replace(_TRAINING, kinds=TRAIN_KINDS + HELD_KINDS, nouns=TRAIN_NOUNS + HELD_KINDS),
    "new-renderer": replace(_TRAINING, **_NEW_LOOK),
    "new-style": replace(_TRAINING, styles=AXES["styles"].held),
    "all-new": replace(
        _TRAINING,
        **_NEW_WORDS | _NEW_LOOK | {"kinds": _HELD_NOUN_KINDS, "nouns": HELD_NOUNS, "styles": AXES["styles"].held},
    ),
}
TRAIN_VARIANTS = tuple(name for name, variant in VARIANTS.items() if not variant.held_out)
HELD_OUT_VARIANTS = tuple(name for name, variant in VARIANTS.items() if variant.held_out)


@dataclass(frozen=True)
class _World:
    """What one item draws from: its variant, canvas and background, and the shades that stand out on it."""

    variant: Variant
    width: int
    height: int
    antialias: bool
    background: Background
    shades: dict[str, tuple[RGB, ...]]  # usable colour -> its shades that keep MIN_CONTRAST to the background
    max_overlap: float

    @property
    def labels(self) -> list[Label]:
        return [(colour, kind) for colour in self.shades for kind in self.variant.kinds]


def _stands_out(rgb: RGB, background: Background) -> bool:
    return all(np.linalg.norm(np.subtract(rgb, tone)) >= MIN_CONTRAST for tone in background.tones)


def _background(rng: random.Random, kind: BackgroundKind) -> Background:
    """Draw a light or dark background of `kind`; textures and noise stay faint, so they never read as objects."""
    dark = kind == "flat-dark" or (kind != "flat-light" and rng.random() < HALF)
    tones = DARK_TONES if dark else LIGHT_TONES
    base = rng.choice(tones)
    step = (1 if dark else -1) * (NOISE_CONTRAST if kind == "noise" else TEXTURE_CONTRAST)
    other = rng.choice([t for t in tones if t != base]) if kind == "gradient" else tuple(v + step for v in base)
    tones_pair = (base, base if kind.startswith("flat") else other)
    direction = rng.randrange(len(DIRECTIONS))
    return Background(kind, tones_pair, rng.randint(*PERIOD_RANGE), direction, rng.randrange(NOISE_SEEDS))


def _world(rng: random.Random, variant: Variant, max_overlap: float) -> _World:
    """Draw the canvas and background, then keep the shades that stand out on it (no white on white)."""
    width, height = rng.choice(variant.canvases)
    background = _background(rng, rng.choice(variant.backgrounds))
    shades: dict[str, tuple[RGB, ...]] = {}
    for colour in variant.colours:
        usable = [SHADE_RGB[s] for s in variant.shades if SHADE_COLOUR[s] == colour]
        usable = [rgb for rgb in usable if _stands_out(rgb, background)]
        if usable:
            shades[colour] = tuple(usable)
    return _World(variant, width, height, rng.choice(variant.antialias), background, shades, max_overlap)


def _wording(rng: random.Random, variant: Variant, qtype: QType) -> Wording:
    """Draw the item's words: one noun per kind and one word per colour, so an item never mixes synonyms."""

    def pick(options: Sequence[str], keep: Callable[[str], bool]) -> str:
        return rng.choice([option for option in options if keep(option)])

    nouns = {kind: NOUNS[pick(variant.nouns, lambda n, k=kind: NOUNS[n].kind == k)] for kind in variant.kinds}
    colours = {c: pick(variant.colour_words, lambda w, c=c: COLOUR_WORDS[w] == c) for c in variant.colours}
    relations = {r: pick(variant.relation_phrases, lambda p, r=r: RELATION_PHRASES[p] == r) for r in RELATIONS}
    prompt, claim = (pick(variant.templates, lambda t, r=role: _slot(t) == (qtype, r)) for role in ("prompt", "claim"))
    return Wording(nouns, colours, rng.choice(variant.numerals), relations, prompt, claim)


@dataclass
class _Layout:
    """Shapes placed so far and what covers each, so a candidate is checked before it is kept."""

    world: _World
    shapes: list[Shape] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    solids: list[np.ndarray] = field(default_factory=list)
    covered: list[np.ndarray] = field(default_factory=list)

    def add(self, shape: Shape) -> bool:
        """Keep `shape` on top if it leaves every shape at most max_overlap covered and keeps colours apart."""
        width, height = self.world.width, self.world.height
        mask = shape_mask(shape, width, height)
        halo = shape_mask(shape, width, height, solid=True, grow=SAME_COLOUR_GAP)
        for other, other_mask, solid, covered in zip(self.shapes, self.masks, self.solids, self.covered, strict=True):
            if other.colour == shape.colour and (halo & solid).any():
                return False
            if (other_mask & (covered | mask)).sum() > self.world.max_overlap * other_mask.sum():
                return False
        self.covered = [covered | mask for covered in self.covered] + [np.zeros_like(mask)]
        self.shapes.append(shape)
        self.masks.append(mask)
        self.solids.append(shape_mask(shape, width, height, solid=True))
        return True

    def position(self, rng: random.Random, shape: Shape) -> Shape:
        margin = 1 + paints(shape)[2] // 2  # an outline may reach half its width past the edge
        left, top, right, bottom = (int(np.ceil(abs(e) * shape.size)) + margin for e in EXTENTS[shape.kind])
        x = rng.randint(left, max(left, self.world.width - 1 - right))
        return replace(shape, x=x, y=rng.randint(top, max(top, self.world.height - 1 - bottom)))

    def place(self, rng: random.Random, shape: Shape) -> bool:
        return any(self.add(self.position(rng, shape)) for _ in range(PLACE_TRIES))


def _beside(rng: random.Random, a: Shape, b: Shape, near_px: float) -> Shape:
    """Return `b` moved next to `a`, its box a small gap from a's on a random side: "next to" is rare by chance."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    gap, side = rng.uniform(1, near_px), rng.randrange(4)
    if side < 2:  # left or right of a, shifted a little along y
        x = ax1 + gap + (b.x - bx0) if side else ax0 - gap - (bx1 - b.x)
        return replace(b, x=round(x), y=round(a.y + rng.uniform(ay0 - a.y, ay1 - a.y) / 2))
    y = ay1 + gap + (b.y - by0) if side == 2 else ay0 - gap - (by1 - b.y)
    return replace(b, x=round(a.x + rng.uniform(ax0 - a.x, ax1 - a.x) / 2), y=round(y))


def _place_pair(rng: random.Random, layout: _Layout, a: Shape, b: Shape, relation: Relation) -> bool:
    """Place a, then b where "a <relation> b" clearly holds."""
    world = layout.world
    if not layout.place(rng, a):
        return False
    a = layout.shapes[-1]
    near_px = NEAR_GAP * min(world.width, world.height)
    for _ in range(SPATIAL_TRIES):
        candidate = _beside(rng, a, b, near_px) if relation == "near" else layout.position(rng, b)
        inside = 0 <= candidate.box[0] and candidate.box[2] < world.width - 1
        inside = inside and 0 <= candidate.box[1] and candidate.box[3] < world.height - 1
        if inside and relation_holds(relation, a, candidate, world.width, world.height) and layout.add(candidate):
            return True
    return False


def _spec(rng: random.Random, world: _World, label: Label) -> Shape:
    """Return an unplaced shape of `label`: a shade, rendering and size from the world's options."""
    colour, kind = label
    low, high = SIZE_FRACTIONS[rng.choice(world.variant.sizes)]
    size = max(MIN_SHAPE_PX, round(rng.uniform(low, high) * min(world.width, world.height)))
    return Shape(kind, colour, rng.choice(world.shades[colour]), rng.choice(world.variant.renderings), 0, 0, size)


def _compose(
    rng: random.Random,
    world: _World,
    required: Sequence[Label],
    allowed: Callable[[Label], bool],
    relation: Relation | None = None,
) -> Scene:
    """Place the required shapes (the first two in `relation`), then distractors whose labels are `allowed`."""
    extras = [label for label in world.labels if allowed(label)]
    for _ in range(SCENE_TRIES):
        layout = _Layout(world)
        specs = [_spec(rng, world, label) for label in required]
        if relation is not None:
            placed = _place_pair(rng, layout, *specs[:2], relation) and all(layout.place(rng, s) for s in specs[2:])
        else:
            placed = all(layout.place(rng, spec) for spec in specs)
        if not placed:
            continue
        for _ in range(rng.randint(max(len(required), 1), MAX_SHAPES) - len(required)):
            if extras:
                layout.place(rng, _spec(rng, world, rng.choice(extras)))
        return Scene(world.width, world.height, world.background, tuple(layout.shapes), world.antialias)
    raise RuntimeError(f"could not place {list(required)} on a {world.width}x{world.height} canvas")


# Questions: each draws its answer first, then a scene where that answer is true.

Builder = Callable[[random.Random, _World, Wording], tuple[Scene, Question]]


def _be(n: int) -> str:
    return "is" if n == 1 else "are"


def _counting(rng: random.Random, world: _World, words: Wording) -> tuple[Scene, Question]:
    colour, kind = target = rng.choice(world.labels)
    true, wrong = rng.sample(rng.choice(COUNT_PAIRS), 2)
    scene = _compose(rng, world, [target] * true, lambda label: label != target)
    slots = words.slots(colour, kind)
    faithful, hallucinated = (
        words.claim(**slots, count=words.count(n, colour, kind), be=_be(n)) for n in (true, wrong)
    )
    return scene, Question(words.prompt(**slots), words.number(true), faithful, hallucinated, "count")


def _colour(rng: random.Random, world: _World, words: Wording) -> tuple[Scene, Question]:
    kind = rng.choice(world.variant.kinds)
    true, wrong = rng.sample(list(world.shades), 2)
    scene = _compose(rng, world, [(true, kind)], lambda label: label[1] != kind)  # the only shape of its kind
    slots = words.slots(true, kind)
    faithful, hallucinated = (words.claim(**slots | {"colour": words.colours[c]}) for c in (true, wrong))
    return scene, Question(words.prompt(**slots), words.colours[true], faithful, hallucinated, "attribute")


def _existence(rng: random.Random, world: _World, words: Wording) -> tuple[Scene, Question]:
    colour, kind = target = rng.choice(world.labels)
    present = rng.random() < HALF
    required = [target] if present else []
    if rng.random() < NEAR_MISS_P:  # an object of the asked colour or kind, so "yes" needs both to match
        required.append(rng.choice([g for g in world.labels if g != target and (g[0] == colour or g[1] == kind)]))
    scene = _compose(rng, world, required, lambda label: label != target)
    slots = words.slots(colour, kind)
    yes, no = words.claim(**slots), words.claim(negative=True, **slots)
    faithful, hallucinated = (yes, no) if present else (no, yes)
    return scene, Question(words.prompt(**slots), "yes" if present else "no", faithful, hallucinated, "object")


def _spatial(rng: random.Random, world: _World, words: Wording) -> tuple[Scene, Question]:
    a, b = rng.sample(world.labels, 2)
    asked: Relation = rng.choice(RELATIONS)
    truth = rng.random() < HALF
    scene = _compose(rng, world, [a, b], lambda label: label not in (a, b), asked if truth else OPPOSITE[asked])
    slots = {"a": words.label(*a), "b": words.label(*b)}
    yes = words.claim(**slots, relation=words.relations[asked])
    no = words.claim(negative=True, **slots, relation=words.relations[OPPOSITE[asked]])
    faithful, hallucinated = (yes, no) if truth else (no, yes)
    prompt = words.prompt(**slots, relation=words.relations[asked])
    return scene, Question(prompt, "yes" if truth else "no", faithful, hallucinated, "relation")


def _description(rng: random.Random, world: _World, words: Wording) -> tuple[Scene, Question]:
    """Describe the scene; the hallucination swaps one group's kind or colour for one the scene lacks.

    A swap, not an added object: an extra object would make the hallucinated answer the longer one every time.
    The groups come in random order, so neither the order nor the length tells the two apart.
    """
    labels = rng.sample(world.labels, rng.randint(1, MAX_GROUPS))
    groups = [(rng.randint(1, MAX_GROUP_COUNT), colour, kind) for colour, kind in labels]
    index = rng.randrange(len(groups))
    n, colour, kind = groups[index]
    htype: HallucinationType = "object" if rng.random() < HALF else "attribute"
    if htype == "object":
        swapped = (n, colour, rng.choice([k for k in world.variant.kinds if (colour, k) not in labels]))
    else:
        swapped = (n, rng.choice([c for c in world.shades if (c, kind) not in labels]), kind)
    altered = [swapped if i == index else group for i, group in enumerate(groups)]
    scene = _compose(rng, world, [(c, k) for n, c, k in groups for _ in range(n)], lambda label: False)
    faithful, hallucinated = (words.claim(objects=words.objects(g), be=_be(g[0][0])) for g in (groups, altered))
    return scene, Question(words.prompt(), words.caption(groups), faithful, hallucinated, htype)


BUILDERS: dict[QType, Builder] = {
    "counting": _counting,
    "colour": _colour,
    "existence": _existence,
    "spatial": _spatial,
    "description": _description,
}


@dataclass(frozen=True)
class FamilyConfig:
    """Settings of one package drawn from the scene family; validated on creation."""

    n_items: int = 200
    seed: int = 0
    variants: tuple[str, ...] = TRAIN_VARIANTS  # drawn uniformly per item; never mix held-out ones into training
    style_p: float | None = None  # None: no style marker; else P(the faithful answer is the styled one)
    prior_noise: float | None = None  # None: no `prior`; else the rate of flipped prior labels
    facts: bool = True  # write `facts` (caption and short answer) for the fact-augmented model
    gold_share: float = 0.0  # fraction of items whose pair is a gold pair
    id_prefix: str = "scene"  # external_id is "<prefix>-000001"
    qtypes: tuple[QType, ...] = QTYPES
    max_overlap: float = DEFAULT_MAX_OVERLAP  # the most of a shape that shapes drawn over it may cover

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be at least 1, got {self.n_items}.")
        for name in ("style_p", "prior_noise", "gold_share"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        if not 0.0 <= self.max_overlap <= MAX_OVERLAP_LIMIT:
            raise ValueError(f"max_overlap must be in [0, {MAX_OVERLAP_LIMIT}], got {self.max_overlap}.")
        if isinstance(self.variants, str):
            raise ValueError(f"variants must be a tuple of names, got the string {self.variants!r}.")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            given = f"unknown {', '.join(map(repr, unknown))}" if unknown else "none given"
            raise ValueError(f"variants {list(self.variants)!r} invalid ({given}); choose from {', '.join(VARIANTS)}.")
        bad = [q for q in self.qtypes if q not in QTYPES]
        if bad or not self.qtypes:
            raise ValueError(f"qtypes {list(self.qtypes)!r} invalid; choose from {', '.join(QTYPES)}.")
        if not self.id_prefix:
            raise ValueError("id_prefix must not be empty.")


def _style(style_p: float | None, variant: Variant, rng: random.Random) -> tuple[str | None, bool | None, str]:
    """Return (style kind, whether the faithful answer carries it, its form); (None, None, PLAIN_FORM) without."""
    if style_p is None:
        return None, None, PLAIN_FORM
    kind = rng.choice(variant.styles)
    faithful_styled = rng.random() < style_p
    return kind, faithful_styled, rng.choice(STYLE_FORMS[kind])


def _caption(scene: Scene, words: Wording) -> str:
    groups = scene.groups()
    order = sorted(groups, key=lambda label: -groups[label])  # stable: first drawn first among equals
    return words.caption([(groups[label], *label) for label in order])


def _make_item(config: FamilyConfig, rngs: Streams, number: int, gold: bool) -> tuple[dict[str, Any], Scene]:
    """Build one item; the faithful answer sits at r0 or r1 by chance, so position is no shortcut."""
    variant_name = rngs.content.choice(config.variants)
    variant = VARIANTS[variant_name]
    qtype = rngs.content.choice(config.qtypes)
    world = _world(rngs.content, variant, config.max_overlap)
    words = _wording(rngs.content, variant, qtype)
    scene, question = BUILDERS[qtype](rngs.content, world, words)
    faithful_id, hallucinated_id = rngs.content.sample(RESPONSE_IDS, 2)
    models = dict(zip(RESPONSE_IDS, rngs.content.sample(MODELS, 2), strict=True))
    style, faithful_styled, form = _style(config.style_p, variant, rngs.style)
    texts = {
        faithful_id: styled(question.faithful, form if faithful_styled else PLAIN_FORM),
        hallucinated_id: styled(question.hallucinated, PLAIN_FORM if faithful_styled else form),
    }
    name = f"{config.id_prefix}-{number:06d}"
    item: dict[str, Any] = {
        "external_id": name,
        "image": f"images/{name}.png",
        "prompt": question.prompt,
        "responses": [{"id": rid, "text": texts[rid], "model": models[rid]} for rid in RESPONSE_IDS],
        "pairs": [list(RESPONSE_IDS)],
    }
    if config.facts:
        caption = question.answer if qtype == "description" else _caption(scene, words)
        item["facts"] = {"caption": caption, "answer": question.answer}
    flipped = None
    if config.prior_noise is not None:
        flipped = rngs.labels.random() < config.prior_noise
        named = faithful_id if flipped else hallucinated_id
        item["prior"] = [label_entry(named, strength=rngs.labels.randint(1, MAX_STRENGTH), source=PRIOR_SOURCE)]
    if gold:
        item["gold"] = [label_entry(hallucinated_id)]
    item["meta"] = {
        "qtype": qtype,
        "hallucination_type": question.hallucination_type,
        "truth": hallucinated_id,
        "variant": variant_name,
        "held_out": variant.held_out,
        "style": style,
        "faithful_styled": faithful_styled,
        "faithful_verbose": faithful_styled,  # the name bench/loop.py reads
        "prior_flipped": flipped,
    }
    return item, scene


def generate_scenes(config: FamilyConfig) -> Iterator[tuple[dict[str, Any], Scene]]:
    """Yield (import-package line, scene) per item: the scene is the truth, for tests and analyses."""
    rngs = Streams.from_seed(config.seed)
    gold = set(rngs.labels.sample(range(config.n_items), round(config.gold_share * config.n_items)))
    for index in range(config.n_items):
        yield _make_item(config, rngs, index + 1, index in gold)


def generate_items(config: FamilyConfig) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Yield (import-package line, PNG bytes) per item, one at a time."""
    for item, scene in generate_scenes(config):
        yield item, png_bytes(scene.render())


def write_package(config: FamilyConfig, path: str | Path) -> Path:
    """Write a .zip with items.jsonl and images/, streaming so no image stays in memory."""
    return write_items(generate_items(config), path)


def _variant_names(names: Sequence[str]) -> tuple[str, ...]:
    """Expand the CLI's group names "train" and "held-out"."""
    groups = {"train": TRAIN_VARIANTS, "held-out": HELD_OUT_VARIANTS}
    return tuple(dict.fromkeys(v for name in names for v in groups.get(name, (name,))))


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m rewardlab.scenes --items 200 --variants held-out --out eval.zip."""
    parser = package_parser("python -m rewardlab.scenes", CLI_DESCRIPTION, QTYPES)
    choices = f"train, held-out or any of {', '.join(VARIANTS)}"
    parser.add_argument("--variants", nargs="+", default=["train"], help=choices)
    parser.add_argument("--style-p", type=float, help="P(the faithful answer carries the style marker)")
    parser.add_argument("--max-overlap", type=float, default=DEFAULT_MAX_OVERLAP, help="most of a shape covered")
    args = parser.parse_args(argv)
    try:
        config = FamilyConfig(
            n_items=args.items,
            seed=args.seed,
            variants=_variant_names(args.variants),
            style_p=args.style_p,
            prior_noise=args.prior_noise,
            facts=not args.no_facts,
            gold_share=args.gold_share,
            id_prefix=args.id_prefix,
            qtypes=tuple(args.qtypes),
            max_overlap=args.max_overlap,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"Wrote {config.n_items} items to {write_package(config, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
