"""The scene family: answers true to their scene, held-out options kept out of training, no text shortcut."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rewardlab.readers import load_dataset
from rewardlab.scene_draw import OUTLINE_RGB, Scene, Shape, relation_holds, shape_mask
from rewardlab.scene_text import (
    COLOUR_WORDS,
    NOUNS,
    NUMBER_WORDS,
    RELATION_PHRASES,
    STYLE_FORMS,
    TEMPLATES,
    strip_style,
    styled,
)
from rewardlab.scenes import (
    AXES,
    HELD_OUT_VARIANTS,
    SHADES,
    TRAIN_VARIANTS,
    VARIANTS,
    FamilyConfig,
    generate_items,
    generate_scenes,
    main,
    write_package,
)
from rewardlab.shapes import PALETTE  # the basic colour terms' prototypes, as the encoder names them
from rewardlab.synthetic import ITEMS_NAME, QTYPES

N = 1500
TOLERANCE = 0.04
BALANCE = 0.1  # per question type there are ~300 items: 0.5 +- 0.1 is over 3 standard errors
META_KEYS = {"qtype", "hallucination_type", "truth", "variant", "held_out", "style", "faithful_styled"}
META_KEYS |= {"faithful_verbose", "prior_flipped"}
EXPECTED_HALLUCINATION = {
    "counting": {"count"},
    "colour": {"attribute"},
    "existence": {"object"},
    "spatial": {"relation"},
    "description": {"object", "attribute"},
}
SHARP_MATCH, SMOOTH_MATCH = 1.0, 60.0  # RGB distance to the shade that counts as showing it, without / with AA
SMOOTH_SHOWN = 0.25  # share of a thin anti-aliased outline's pixels still near its shade (0.36 at worst, seen)

Item = dict[str, Any]


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


NOUN_KIND = {form: noun.kind for noun in NOUNS.values() for form in (noun.singular, noun.plural)}
NUMBER_VALUE = {**{word: n for n, word in enumerate(NUMBER_WORDS)}, **{str(n): n for n in range(10)}, "a": 1, "an": 1}
LABEL = rf"\b({_alternation(list(COLOUR_WORDS))}) ({_alternation(list(NOUN_KIND))})\b"
COUNTED = re.compile(rf"\b({_alternation(list(NUMBER_VALUE))}) {LABEL}")
NUMBER = re.compile(rf"\b({_alternation([w for w in NUMBER_VALUE if w not in ('a', 'an')])})\b")
RELATION = re.compile(rf"\b({_alternation(list(RELATION_PHRASES))})\b")
PLAINLY_NEAR, PLAINLY_FAR = 0.1, 0.2  # of the shorter side: "next to" and "far from" as a reader would judge
YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def _labels(text: str) -> list[tuple[str, str]]:
    """Return the (basic colour, kind) of each "<colour> <noun>" in `text`, in order."""
    return [(COLOUR_WORDS[c], NOUN_KIND[n]) for c, n in re.findall(LABEL, text)]


def _texts(item: Item) -> tuple[str, str]:
    """Return (faithful text, hallucinated text)."""
    by_id = {r["id"]: r["text"] for r in item["responses"]}
    truth = item["meta"]["truth"]
    (faithful,) = (text for rid, text in by_id.items() if rid != truth)
    return faithful, by_id[truth]


def _bare(item: Item) -> tuple[str, str]:
    faithful, hallucinated = _texts(item)
    return strip_style(faithful), strip_style(hallucinated)


def _template_pattern(text: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(text)))


def _templates_matching(bare: str, role: str = "claim") -> set[str]:
    return {
        tid
        for tid, template in TEMPLATES.items()
        if template.role == role
        and any(_template_pattern(form).fullmatch(bare) for form in (template.text, template.negative) if form)
    }


@pytest.fixture(scope="module")
def scenes() -> list[tuple[Item, Scene]]:
    config = FamilyConfig(n_items=N, seed=7, variants=tuple(VARIANTS), style_p=0.8, prior_noise=0.2, gold_share=0.1)
    return list(generate_scenes(config))


@pytest.fixture(scope="module")
def items(scenes) -> list[Item]:
    return [item for item, _ in scenes]


def test_every_line_has_the_import_package_shape(items):
    for number, item in enumerate(items, start=1):
        assert item["external_id"] == f"scene-{number:06d}"
        assert item["image"] == f"images/{item['external_id']}.png"
        assert [r["id"] for r in item["responses"]] == ["r0", "r1"] and item["pairs"] == [["r0", "r1"]]
        assert set(item["facts"]) == {"caption", "answer"}
        assert set(item["meta"]) == META_KEYS
        assert item["meta"]["hallucination_type"] in EXPECTED_HALLUCINATION[item["meta"]["qtype"]]
        assert item["meta"]["held_out"] is (item["meta"]["variant"] in HELD_OUT_VARIANTS)
        assert item["meta"]["faithful_verbose"] is item["meta"]["faithful_styled"]
        json.dumps(item)
    assert {(item["meta"]["variant"], item["meta"]["qtype"]) for item in items} == {
        (variant, qtype) for variant in VARIANTS for qtype in QTYPES
    }


def _check_counting(item: Item, scene: Scene, faithful: str, hallucinated: str) -> None:
    (target,) = _labels(item["prompt"])
    true = scene.groups()[target]
    assert [NUMBER_VALUE[n] for n in NUMBER.findall(faithful)] == [true], (faithful, scene.groups())
    (wrong,) = (NUMBER_VALUE[n] for n in NUMBER.findall(hallucinated))
    assert wrong != true


def _check_colour(item: Item, scene: Scene, faithful: str, hallucinated: str) -> None:
    (noun,) = (n for n in NOUN_KIND if re.search(rf"\b{re.escape(n)}\b", item["prompt"]))
    (shape,) = (s for s in scene.shapes if s.kind == NOUN_KIND[noun])  # the only shape of its kind
    said = [{COLOUR_WORDS[w] for w in COLOUR_WORDS if re.search(rf"\b{w}\b", t)} for t in (faithful, hallucinated)]
    assert said[0] == {shape.colour} and len(said[1]) == 1 and shape.colour not in said[1], (faithful, hallucinated)


def _check_existence(item: Item, scene: Scene, faithful: str, hallucinated: str) -> None:
    (target,) = _labels(item["prompt"])
    present = target in scene.groups()
    answers = [YES_NO.search(text)[1].lower() for text in (faithful, hallucinated)]
    assert answers == (["yes", "no"] if present else ["no", "yes"]), (item["prompt"], faithful)


def _check_spatial(item: Item, scene: Scene, faithful: str, hallucinated: str) -> None:
    a, b = _labels(item["prompt"])
    groups = scene.groups()
    assert groups[a] == groups[b] == 1
    (shape_a,) = (s for s in scene.shapes if (s.colour, s.kind) == a)
    (shape_b,) = (s for s in scene.shapes if (s.colour, s.kind) == b)
    for text, true in ((faithful, True), (hallucinated, False)):
        relation = RELATION_PHRASES[RELATION.search(text)[1]]
        assert relation_holds(relation, shape_a, shape_b, scene.width, scene.height) is true, (text, scene)
        if true:
            assert _plainly_true(relation, shape_a, shape_b, min(scene.width, scene.height)), (text, scene)


def _plainly_true(relation: str, a: Shape, b: Shape, side: int) -> bool:
    """A looser, independent reading of the relation words, so a loosened `relation_holds` cannot pass unseen."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    dx, dy = b.x - a.x, b.y - a.y
    gap = max(bx0 - ax1, ax0 - bx1, by0 - ay1, ay0 - by1)
    return {
        "left": ax1 < bx0 and abs(dy) < abs(dx),
        "right": bx1 < ax0 and abs(dy) < abs(dx),
        "above": ay1 < by0 and abs(dx) < abs(dy),
        "below": by1 < ay0 and abs(dx) < abs(dy),
        "near": gap <= PLAINLY_NEAR * side,
        "far": gap >= PLAINLY_FAR * side,
    }[relation]


def _check_description(item: Item, scene: Scene, faithful: str, hallucinated: str) -> None:
    def said(text: str) -> Counter[tuple[str, str]]:
        return Counter({(COLOUR_WORDS[c], NOUN_KIND[k]): NUMBER_VALUE[n] for n, c, k in COUNTED.findall(text)})

    assert said(faithful) == scene.groups(), (faithful, scene.groups())
    assert said(hallucinated) != scene.groups()
    assert sum(said(hallucinated).values()) == len(scene.shapes)  # a swap: the same number of objects


CHECKS = {
    "counting": _check_counting,
    "colour": _check_colour,
    "existence": _check_existence,
    "spatial": _check_spatial,
    "description": _check_description,
}


def test_answers_are_true_to_the_scene(scenes):
    """Read each claim back from the text and check it against the scene's shapes."""
    for item, scene in scenes:
        CHECKS[item["meta"]["qtype"]](item, scene, *_bare(item))


def test_every_shape_stays_answerable(scenes):
    """No shape is covered past max_overlap, and shapes of one colour never touch (they would read as one)."""
    for _, scene in scenes[:300]:
        masks = [shape_mask(s, scene.width, scene.height) for s in scene.shapes]
        for index, (shape, mask) in enumerate(zip(scene.shapes, masks, strict=True)):
            covered = np.logical_or.reduce([np.zeros_like(mask), *masks[index + 1 :]])
            assert (mask & covered).sum() <= 0.35 * mask.sum()
            for other in scene.shapes[index + 1 :]:
                if other.colour == shape.colour:
                    solid = shape_mask(other, scene.width, scene.height, solid=True)
                    assert not (shape_mask(shape, scene.width, scene.height, solid=True) & solid).any()


def test_a_lower_max_overlap_is_honoured():
    for _, scene in generate_scenes(FamilyConfig(n_items=60, seed=2, max_overlap=0.0)):
        masks = [shape_mask(s, scene.width, scene.height) for s in scene.shapes]
        assert (np.sum(masks, axis=0) <= 1).all()  # no pixel painted by two shapes


def _shown(pixels: np.ndarray, scene: Scene, index: int, match: float) -> float:
    """Return the share of a shape's visible pixels (not under a later shape) that show its shade."""
    masks = [shape_mask(s, scene.width, scene.height) for s in scene.shapes]
    visible = masks[index] & ~np.logical_or.reduce([np.zeros_like(masks[index]), *masks[index + 1 :]])
    shape = scene.shapes[index]
    shades = [shape.rgb, OUTLINE_RGB] if shape.rendering == "outlined" else [shape.rgb]
    near = np.min([np.linalg.norm(pixels - rgb, axis=-1) for rgb in shades], axis=0) < match
    return float(near[visible].mean())


def test_every_variant_renders_each_shape_in_its_shade():
    """Drawn sharp, every visible pixel of a shape shows its shade; anti-aliasing only softens the edges."""
    for name, variant in VARIANTS.items():
        config = FamilyConfig(n_items=10, seed=1, variants=(name,))
        for (item, scene), (_, png) in zip(generate_scenes(config), generate_items(config), strict=True):
            with Image.open(io.BytesIO(png)) as image:
                assert (image.format, image.mode) == ("PNG", "RGB")
                assert image.size == (scene.width, scene.height) and image.size in variant.canvases
                pixels = np.asarray(image, dtype=float)
            assert scene.antialias in variant.antialias
            sharp = np.asarray(replace(scene, antialias=False).render(), dtype=float)
            assert np.array_equal(pixels, sharp) is not scene.antialias
            for index, shape in enumerate(scene.shapes):
                assert _shown(sharp, scene, index, SHARP_MATCH) == 1.0, (name, item["external_id"], shape)
                if scene.antialias:
                    assert _shown(pixels, scene, index, SMOOTH_MATCH) >= SMOOTH_SHOWN, (name, shape)


def test_shades_are_named_by_their_basic_colour_and_stand_out_from_the_background(scenes):
    for colour, shades in SHADES.items():
        for rgb in shades:
            nearest = min(PALETTE, key=lambda name: np.linalg.norm(np.subtract(rgb, PALETTE[name])))
            assert nearest == colour, rgb
    for _, scene in scenes:
        for shape in scene.shapes:
            assert all(np.linalg.norm(np.subtract(shape.rgb, tone)) >= 100 for tone in scene.background.tones)


def test_held_out_options_never_appear_in_training_variants():
    assert len(HELD_OUT_VARIANTS) >= 3 and TRAIN_VARIANTS
    assert set(AXES["styles"].train + AXES["styles"].held) == set(STYLE_FORMS)
    for name, axis in AXES.items():
        assert axis.held and not set(axis.held) & set(axis.train), name
        for variant in TRAIN_VARIANTS:
            assert not set(getattr(VARIANTS[variant], name)) & set(axis.held), (variant, name)
    for variant in HELD_OUT_VARIANTS:
        assert any(set(getattr(VARIANTS[variant], n)) & set(a.held) for n, a in AXES.items()), variant


# What each held-out variant changes: the axes where it draws held-out options; all others stay as in training.
CHANGED_AXES = {
    "new-vocabulary": {"nouns", "colour_words", "numerals", "relation_phrases", "templates"},
    "new-objects": {"kinds", "nouns"},
    "new-renderer": {"renderings", "shades", "backgrounds", "sizes", "canvases", "antialias"},
    "new-style": {"styles"},
    "all-new": set(AXES),
}
# Axes where every option has a held-out counterpart, so a variant that changes them uses held-out options only.
WHOLLY_HELD = {
    "numerals",
    "templates",
    "renderings",
    "shades",
    "backgrounds",
    "sizes",
    "canvases",
    "antialias",
    "styles",
}


def test_each_held_out_variant_changes_what_its_name_says():
    assert set(CHANGED_AXES) == set(HELD_OUT_VARIANTS)
    for name, axes in CHANGED_AXES.items():
        variant = VARIANTS[name]
        changed = {axis for axis, pool in AXES.items() if set(getattr(variant, axis)) & set(pool.held)}
        assert changed == axes, name
        for axis in axes & WHOLLY_HELD:
            assert set(getattr(variant, axis)) <= set(AXES[axis].held), (name, axis)


def test_training_packages_hold_no_held_out_word_template_style_or_look():
    held_words = [*AXES["nouns"].held, *AXES["colour_words"].held, *AXES["relation_phrases"].held]
    held_words += [NOUNS[n].plural for n in AXES["nouns"].held]
    held = re.compile(rf"\b({_alternation(held_words)})\b|\d")
    config = FamilyConfig(n_items=600, seed=3, style_p=0.5)
    for item, scene in generate_scenes(config):
        texts = [item["prompt"], *(r["text"] for r in item["responses"]), *item["facts"].values()]
        assert not [held.search(text) for text in texts if held.search(text)], texts
        assert item["meta"]["style"] in AXES["styles"].train
        (prompt,) = _templates_matching(item["prompt"], "prompt")
        claims = set.union(*(_templates_matching(bare) for bare in _bare(item)))
        assert not ({prompt} | claims) & set(AXES["templates"].held)
        look = {"backgrounds": scene.background.kind, "canvases": (scene.width, scene.height)}
        look |= {"antialias": scene.antialias}
        assert all(value in AXES[axis].train for axis, value in look.items())
        assert all(s.rendering in AXES["renderings"].train and s.kind in AXES["kinds"].train for s in scene.shapes)


def test_same_seed_gives_identical_zip_bytes(tmp_path):
    seeds = (3, 3, 4)
    configs = [FamilyConfig(n_items=20, seed=s, variants=tuple(VARIANTS), style_p=0.5) for s in seeds]
    first, again, other = (write_package(c, tmp_path / f"{i}.zip").read_bytes() for i, c in enumerate(configs))
    assert first == again
    assert first != other


def test_style_p_sets_how_often_the_faithful_answer_carries_the_style(items):
    styled_share = sum(item["meta"]["faithful_styled"] for item in items) / N
    assert styled_share == pytest.approx(0.8, abs=TOLERANCE)
    for item in items:
        faithful, hallucinated = _texts(item)
        style, faithful_styled = item["meta"]["style"], item["meta"]["faithful_styled"]
        assert style in VARIANTS[item["meta"]["variant"]].styles
        marked, plain = (faithful, hallucinated) if faithful_styled else (hallucinated, faithful)
        assert plain == styled(strip_style(plain))
        assert marked in {styled(strip_style(marked), form) for form in STYLE_FORMS[style]}


def test_answers_share_their_template_and_differ_only_in_the_claim_once_the_style_is_stripped(items):
    for item in items:
        faithful, hallucinated = _bare(item)
        assert faithful != hallucinated
        assert _templates_matching(faithful) & _templates_matching(hallucinated), (faithful, hallucinated)
        changed = set(faithful.split()) ^ set(hallucinated.split())
        assert len(changed) <= 8, (faithful, hallucinated)


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def test_text_alone_gives_no_answer_away(items):
    """Claims are drawn in pairs, the true one picked by chance: the faithful bare answer is as often the longer,
    the "yes", the larger count or the colour word that sorts first."""
    bare = {qtype: [_bare(item) for item in items if item["meta"]["qtype"] == qtype] for qtype in QTYPES}
    every = [pair for pairs in bare.values() for pair in pairs]
    unequal = [(f, h) for f, h in every if len(f) != len(h)]
    assert _share([len(f) > len(h) for f, h in unequal]) == pytest.approx(0.5, abs=BALANCE)
    yes_no = [YES_NO.search(f)[1].lower() == "yes" for f, _ in bare["existence"] + bare["spatial"]]
    assert _share(yes_no) == pytest.approx(0.5, abs=BALANCE)
    counts = [[NUMBER_VALUE[n] for n in NUMBER.findall(text)] for text in (f for f, _ in bare["counting"])]
    wrong = [[NUMBER_VALUE[n] for n in NUMBER.findall(text)] for text in (h for _, h in bare["counting"])]
    assert _share([f > h for f, h in zip(counts, wrong, strict=True)]) == pytest.approx(0.5, abs=BALANCE)
    assert _share([f.split()[-1] < h.split()[-1] for f, h in bare["colour"]]) == pytest.approx(0.5, abs=BALANCE)


def test_without_style_p_no_answer_is_styled_and_the_scenes_stay_the_same(items):
    plain = [item for item, _ in generate_scenes(FamilyConfig(n_items=200, seed=7, variants=tuple(VARIANTS)))]
    for item, styled_item in zip(plain, items, strict=False):
        assert item["meta"]["style"] is None and item["meta"]["faithful_styled"] is None
        assert all(r["text"] == styled(strip_style(r["text"])) for r in item["responses"])
        assert (item["prompt"], item["facts"]) == (styled_item["prompt"], styled_item["facts"])
        assert _bare(item) == _bare(styled_item)


def test_prior_noise_rate_and_flags(items):
    flipped = [item["meta"]["prior_flipped"] for item in items]
    assert sum(flipped) / N == pytest.approx(0.2, abs=TOLERANCE)
    for item, was_flipped in zip(items, flipped, strict=True):
        assert (item["prior"][0]["more_hallucinated"] != item["meta"]["truth"]) is was_flipped
    gold = [item for item in items if "gold" in item]
    assert len(gold) == round(0.1 * N)
    assert all(item["gold"][0]["more_hallucinated"] == item["meta"]["truth"] for item in gold)


def test_package_loads_as_training_data(tmp_path):
    config = FamilyConfig(n_items=30, seed=4, variants=HELD_OUT_VARIANTS, prior_noise=0.0, gold_share=0.5)
    with load_dataset(write_package(config, tmp_path / "eval.zip")) as dataset:
        assert len(dataset.items) == len(dataset.pairs) == 30
        assert Counter(label.source for label in dataset.labels) == {"prior": 30, "gold": 15}
        assert {item.meta["variant"] for item in dataset.items} <= set(HELD_OUT_VARIANTS)
        with Image.open(io.BytesIO(dataset.read_image(dataset.items[0].image))) as image:
            assert image.format == "PNG"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_items": 0}, "n_items"),
        ({"style_p": 1.5}, "style_p"),
        ({"prior_noise": -0.1}, "prior_noise"),
        ({"gold_share": 2.0}, "gold_share"),
        ({"max_overlap": 0.9}, "max_overlap"),
        (
            {"variants": ("train-mixed", "nope")},
            "unknown 'nope'\\); choose from train-flat, train-textured, train-mixed",
        ),
        ({"variants": "new-style"}, "a tuple of names, got the string 'new-style'"),
        ({"variants": ()}, "none given"),
        ({"qtypes": ("colour", "size")}, "counting, colour, existence, spatial, description"),
        ({"id_prefix": ""}, "id_prefix"),
    ],
)
def test_invalid_config_raises(options, message):
    with pytest.raises(ValueError, match=message):
        FamilyConfig(**options)


def test_a_variant_must_name_a_noun_for_each_kind():
    with pytest.raises(ValueError, match="nouns must cover exactly"):
        replace(VARIANTS["train-mixed"], nouns=("circle", "square"))
    with pytest.raises(ValueError, match="backgrounds \\['velvet'\\] invalid"):
        replace(VARIANTS["train-mixed"], backgrounds=("velvet",))


def test_cli_writes_held_out_variants(tmp_path, capsys):
    out = tmp_path / "eval.zip"
    assert main(["--items", "16", "--variants", "held-out", "--style-p", "0.5", "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        lines = [json.loads(line) for line in archive.read(ITEMS_NAME).decode().splitlines()]
    assert len(lines) == 16 and {line["meta"]["variant"] for line in lines} <= set(HELD_OUT_VARIANTS)
    assert str(out) in capsys.readouterr().out


def test_cli_rejects_an_unknown_variant(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x.zip"), "--variants", "nope"])
    assert exit_info.value.code == 2
