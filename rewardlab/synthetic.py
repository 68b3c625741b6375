"""Synthetic scenes whose content is known, written as RewardLab import packages.

Demo campaigns, tests and benchmarks need preference data whose truth is known: which answer
hallucinates, what kind of hallucination it is, how noisy the prior labels are and whether a
text-style shortcut (verbosity) predicts the label. Real datasets cannot tell us that, so this
module draws coloured shapes on a small canvas, asks a question about them and writes one
faithful and one hallucinated answer, in the import-package format of API.md.

Three seeded random streams keep ablations comparable: the scene, question and answer position
come from one, the text style from another and the prior and gold labels from a third, so
changing ``prior_noise`` or ``verbose_p`` keeps the same scenes for the same seed.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from PIL import Image, ImageDraw

QType = Literal["counting", "colour", "existence", "spatial", "description"]
HallucinationType = Literal["object", "attribute", "count", "relation"]
Kind = Literal["circle", "square", "triangle"]
Colour = Literal["red", "green", "blue", "yellow", "purple", "orange"]

QTYPES: tuple[QType, ...] = get_args(QType)
KINDS: tuple[Kind, ...] = get_args(Kind)
PALETTE: dict[Colour, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
COLOURS: tuple[Colour, ...] = tuple(PALETTE)
COMBOS: tuple[tuple[Colour, Kind], ...] = tuple((c, k) for c in COLOURS for k in KINDS)
BACKGROUND = (248, 248, 245)
GRID = 3  # shapes sit in distinct cells of a GRID x GRID layout, so they never overlap
MAX_SHAPES = 5
MIN_IMAGE_SIZE = 32
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven")
RESPONSE_IDS = ("r0", "r1")
MODELS = ("synth-vlm-small", "synth-vlm-large")  # drawn independently of truth: no model shortcut
MAX_STRENGTH = 4
PRIOR_SOURCE = "synthetic"
ITEMS_NAME = "items.jsonl"
CLI_DESCRIPTION = "Write a RewardLab import package of synthetic scenes whose truth is known."
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same seed gives byte-identical packages

# Verbose answers wrap the terse claim in padding that adds no facts, so that length and
# politeness are a pure style signal (the shortcut DT2IT-MRM and Li et al. warn about).
OPENERS = (
    "I looked carefully at the whole image before answering.",
    "Thank you for the question; let me tell you what I observe in the picture.",
    "After examining every part of the picture closely, here is my answer.",
)
HEDGES = (
    ", as far as I can tell from the picture",
    ", judging by the shapes and colours that are visible",
    ", based on what is shown in the image",
)
CLOSERS = (" I hope this helps!", " Please let me know if you would like more detail.", "")


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of one synthetic package; validated on creation."""

    n_items: int = 200
    seed: int = 0
    image_size: int = 96  # pixels per side
    facts: bool = True  # write `facts` (caption and short answer) for the fact-augmented model
    prior_noise: float | None = None  # None: no `prior`; else the rate of flipped prior labels
    verbose_p: float | None = None  # None: independent styles; else P(faithful one is the verbose one)
    gold_share: float = 0.0  # fraction of items whose pair is a gold pair
    qtypes: tuple[QType, ...] = QTYPES
    id_prefix: str = "scene"  # external_id is "<prefix>-000001": another prefix adds items to the same campaign

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be at least 1, got {self.n_items}.")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {self.image_size}.")
        for name in ("prior_noise", "verbose_p", "gold_share"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        unknown = [q for q in self.qtypes if q not in QTYPES]
        if unknown or not self.qtypes:
            raise ValueError(f"qtypes {list(self.qtypes)!r} invalid; choose from {', '.join(QTYPES)}.")


@dataclass(frozen=True)
class Shape:
    kind: Kind
    colour: Colour
    x: int  # centre, pixels
    y: int
    size: int  # side or diameter, pixels

    @property
    def label(self) -> str:
        return f"{self.colour} {self.kind}"

    @property
    def box(self) -> tuple[int, int, int, int]:
        half = self.size // 2
        return self.x - half, self.y - half, self.x + half, self.y + half


@dataclass(frozen=True)
class Scene:
    """A canvas with known shapes: the ground truth every question is checked against."""

    shapes: tuple[Shape, ...]
    image_size: int = 96

    def groups(self) -> Counter[tuple[Colour, Kind]]:
        return Counter((s.colour, s.kind) for s in self.shapes)

    def caption(self) -> str:
        """Return e.g. "Two red circles and a blue square." (largest groups first)."""
        text = describe((s.colour, s.kind) for s in self.shapes)
        return f"{text[0].upper()}{text[1:]}."

    def render(self) -> Image.Image:
        image = Image.new("RGB", (self.image_size, self.image_size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for shape in self.shapes:
            left, top, right, bottom = box = shape.box
            fill = PALETTE[shape.colour]
            if shape.kind == "circle":
                draw.ellipse(box, fill=fill)
            elif shape.kind == "square":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(shape.x, top), (left, bottom), (right, bottom)], fill=fill)
        return image


@dataclass(frozen=True)
class Question:
    """A prompt with its short true answer and two claims (no final period) about the scene."""

    prompt: str
    answer: str
    faithful: str
    hallucinated: str
    hallucination_type: HallucinationType


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(colour: str, kind: str, count: int) -> str:
    if count == 1:
        return f"{_article(colour)} {colour} {kind}"
    return f"{NUMBER_WORDS[count]} {colour} {kind}s"


def describe(labels: Iterable[tuple[Colour, Kind]]) -> str:
    """Return "two red circles and a blue square": the same shapes always read the same way."""
    groups = Counter(labels)
    order = sorted(groups, key=lambda g: (-groups[g], KINDS.index(g[1]), COLOURS.index(g[0])))
    parts = [_phrase(colour, kind, groups[colour, kind]) for colour, kind in order]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def random_scene(rng: random.Random, image_size: int = 96) -> Scene:
    """Draw 1-5 shapes, each inside its own grid cell so none overlap."""
    cell = image_size // GRID
    shapes = []
    for index in rng.sample(range(GRID * GRID), rng.randint(1, MAX_SHAPES)):
        size = rng.randint(int(cell * 0.45), int(cell * 0.8))
        half = size // 2
        column, row = index % GRID, index // GRID
        x = column * cell + rng.randint(half, cell - 1 - half)
        y = row * cell + rng.randint(half, cell - 1 - half)
        shapes.append(Shape(rng.choice(KINDS), rng.choice(COLOURS), x, y, size))
    return Scene(tuple(shapes), image_size)


def _counting(scene: Scene, rng: random.Random) -> Question | None:
    groups = scene.groups()
    colour, kind = rng.choice(list(groups))
    count = groups[colour, kind]
    wrong = rng.choice([n for n in (count - 2, count - 1, count + 1, count + 2) if n >= 1])

    def claim(n: int) -> str:
        noun = kind if n == 1 else f"{kind}s"
        return f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {colour} {noun} in the image"

    prompt = f"How many {colour} {kind}s are in the image?"
    return Question(prompt, NUMBER_WORDS[count], claim(count), claim(wrong), "count")


def _colour(scene: Scene, rng: random.Random) -> Question | None:
    kinds = Counter(s.kind for s in scene.shapes)
    singles = [s for s in scene.shapes if kinds[s.kind] == 1]
    if not singles:
        return None
    shape = rng.choice(singles)
    wrong = rng.choice([c for c in COLOURS if c != shape.colour])
    faithful, hallucinated = (f"The {shape.kind} is {colour}" for colour in (shape.colour, wrong))
    return Question(f"What colour is the {shape.kind}?", shape.colour, faithful, hallucinated, "attribute")


def _existence(scene: Scene, rng: random.Random) -> Question | None:
    groups = scene.groups()
    present = rng.random() < 0.5
    colour, kind = rng.choice(list(groups) if present else [g for g in COMBOS if g not in groups])
    thing = f"{_article(colour)} {colour} {kind}"
    yes, no = f"Yes, there is {thing} in the image", f"No, there is no {colour} {kind} in the image"
    faithful, hallucinated = (yes, no) if present else (no, yes)
    prompt = f"Is there {thing} in the image?"
    return Question(prompt, "yes" if present else "no", faithful, hallucinated, "object")


def _spatial(scene: Scene, rng: random.Random) -> Question | None:
    groups = scene.groups()
    unique = [s for s in scene.shapes if groups[s.colour, s.kind] == 1]
    # Only shapes whose horizontal extents are apart, so "left of" has one right answer.
    pairs = [(a, b) for a in unique for b in unique if a.box[2] < b.box[0] or b.box[2] < a.box[0]]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    side, other = rng.choice((("left", "right"), ("right", "left")))
    truth = (a.x < b.x) == (side == "left")
    yes = f"Yes, the {a.label} is to the {side} of the {b.label}"
    no = f"No, the {a.label} is to the {other} of the {b.label}"
    faithful, hallucinated = (yes, no) if truth else (no, yes)
    prompt = f"Is the {a.label} to the {side} of the {b.label}?"
    return Question(prompt, "yes" if truth else "no", faithful, hallucinated, "relation")


def _description(scene: Scene, rng: random.Random) -> Question | None:
    labels = [(s.colour, s.kind) for s in scene.shapes]
    altered = list(labels)
    htype: HallucinationType
    if rng.random() < 0.5:  # add an object that is not there
        altered.append(rng.choice([g for g in COMBOS if g not in labels]))
        htype = "object"
    else:  # recolour one that is
        index = rng.randrange(len(labels))
        colour, kind = labels[index]
        altered[index] = (rng.choice([c for c in COLOURS if c != colour]), kind)
        htype = "attribute"
    faithful, hallucinated = (f"The image shows {describe(x)}" for x in (labels, altered))
    return Question("Describe the image.", scene.caption(), faithful, hallucinated, htype)


QUESTIONS: dict[QType, Callable[[Scene, random.Random], Question | None]] = {
    "counting": _counting,
    "colour": _colour,
    "existence": _existence,
    "spatial": _spatial,
    "description": _description,
}


def _scene_and_question(qtype: QType, image_size: int, rng: random.Random) -> tuple[Scene, Question]:
    """Redraw until the scene can answer the question (e.g. spatial needs two distinct shapes)."""
    while True:
        scene = random_scene(rng, image_size)
        question = QUESTIONS[qtype](scene, rng)
        if question is not None:
            return scene, question


def _styles(verbose_p: float | None, rng: random.Random) -> tuple[bool, bool]:
    """Return whether (faithful, hallucinated) answers are verbose."""
    if verbose_p is None:
        return rng.random() < 0.5, rng.random() < 0.5
    faithful = rng.random() < verbose_p
    return faithful, not faithful


def _styled(claim: str, verbose: bool, rng: random.Random) -> str:
    """Write the claim tersely, or padded with words that add no facts."""
    if not verbose:
        return f"{claim}."
    return f"{rng.choice(OPENERS)} {claim}{rng.choice(HEDGES)}.{rng.choice(CLOSERS)}"


@dataclass(frozen=True)
class Streams:
    """Independent random streams, so changing label or style settings keeps the same scenes."""

    content: random.Random
    style: random.Random
    labels: random.Random

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        return cls(*(random.Random(f"{seed}/{name}") for name in ("content", "style", "labels")))


def label_entry(more_hallucinated: str, **extra: Any) -> dict[str, Any]:
    """Return a `prior` or `gold` entry for the item's only pair."""
    return {"pair": list(RESPONSE_IDS), "more_hallucinated": more_hallucinated, **extra}


def _make_item(config: SyntheticConfig, rngs: Streams, number: int, gold: bool) -> tuple[dict[str, Any], Scene]:
    """Build one item; the faithful answer sits at r0 or r1 by chance, so position is no shortcut."""
    qtype = rngs.content.choice(config.qtypes)
    scene, question = _scene_and_question(qtype, config.image_size, rngs.content)
    faithful_id, hallucinated_id = rngs.content.sample(RESPONSE_IDS, 2)
    models = dict(zip(RESPONSE_IDS, rngs.content.sample(MODELS, 2), strict=True))
    faithful_verbose, hallucinated_verbose = _styles(config.verbose_p, rngs.style)
    texts = {
        faithful_id: _styled(question.faithful, faithful_verbose, rngs.style),
        hallucinated_id: _styled(question.hallucinated, hallucinated_verbose, rngs.style),
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
        item["facts"] = {"caption": scene.caption(), "answer": question.answer}
    flipped = None
    if config.prior_noise is not None:
        flipped = rngs.labels.random() < config.prior_noise
        named = faithful_id if flipped else hallucinated_id
        strength = rngs.labels.randint(1, MAX_STRENGTH)
        item["prior"] = [label_entry(named, strength=strength, source=PRIOR_SOURCE)]
    if gold:
        item["gold"] = [label_entry(hallucinated_id)]
    item["meta"] = {
        "qtype": qtype,
        "hallucination_type": question.hallucination_type,
        "truth": hallucinated_id,
        "faithful_verbose": None if config.verbose_p is None else faithful_verbose,
        "prior_flipped": flipped,
    }
    return item, scene


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def generate_items(config: SyntheticConfig) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Yield (import-package line, PNG bytes) per item, one at a time."""
    rngs = Streams.from_seed(config.seed)
    gold = set(rngs.labels.sample(range(config.n_items), round(config.gold_share * config.n_items)))
    for index in range(config.n_items):
        item, scene = _make_item(config, rngs, index + 1, index in gold)
        yield item, png_bytes(scene.render())


def _entry(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress_type
    info.external_attr = 0o644 << 16
    return info


def write_package(config: SyntheticConfig, path: str | Path) -> Path:
    """Write a .zip with items.jsonl and images/, streaming so no image stays in memory."""
    return write_items(generate_items(config), path)


def write_items(items: Iterable[tuple[dict[str, Any], bytes]], path: str | Path) -> Path:
    """Write (import-package line, PNG bytes) pairs as a package .zip; shared with `rewardlab.scenes`.

    Images are written as they come and the lines kept in a temporary file, so no image stays in memory;
    fixed dates and ordering make the same items give byte-identical zips.
    """
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive, tempfile.TemporaryFile() as lines:
        for item, png in items:
            archive.writestr(_entry(item["image"], zipfile.ZIP_STORED), png)  # PNG is compressed already
            lines.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        lines.seek(0)
        with archive.open(_entry(ITEMS_NAME, zipfile.ZIP_DEFLATED), "w") as out:
            shutil.copyfileobj(lines, out)
    return path


def package_parser(prog: str, description: str, qtypes: Sequence[str]) -> argparse.ArgumentParser:
    """Return a parser with the options every package generator takes (this one and `rewardlab.scenes`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--items", type=int, default=200, help="number of items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the .zip to write")
    parser.add_argument("--qtypes", nargs="+", default=list(qtypes), help=f"any of {', '.join(qtypes)}")
    parser.add_argument("--no-facts", action="store_true", help="leave out `facts`")
    parser.add_argument("--prior-noise", type=float, help="write `prior` labels, this share flipped")
    parser.add_argument("--gold-share", type=float, default=0.0, help="share of items with a gold pair")
    parser.add_argument("--id-prefix", default="scene", help="external_id prefix, to add a second batch to a campaign")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m rewardlab.synthetic --items 200 --seed 0 --out demo.zip."""
    parser = package_parser("python -m rewardlab.synthetic", CLI_DESCRIPTION, QTYPES)
    parser.add_argument("--image-size", type=int, default=96, help="pixels per side")
    parser.add_argument("--verbose-p", type=float, help="P(the faithful answer is the verbose one)")
    args = parser.parse_args(argv)
    try:
        config = SyntheticConfig(
            n_items=args.items,
            seed=args.seed,
            image_size=args.image_size,
            facts=not args.no_facts,
            prior_noise=args.prior_noise,
            verbose_p=args.verbose_p,
            gold_share=args.gold_share,
            qtypes=tuple(args.qtypes),
            id_prefix=args.id_prefix,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"Wrote {config.n_items} items to {write_package(config, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
