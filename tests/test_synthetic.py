"""The synthetic generator: its packages follow API.md and its truth, noise and shortcuts are as asked."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest
from PIL import Image

from rewardlab.synthetic import (
    BACKGROUND,
    ITEMS_NAME,
    OPENERS,
    PALETTE,
    QTYPES,
    Scene,
    Shape,
    SyntheticConfig,
    generate_items,
    main,
    write_package,
)

N = 2000
TOLERANCE = 0.04
RESPONSE_KEYS = {"id", "text", "model"}
REQUIRED_KEYS = {"external_id", "image", "prompt", "responses", "pairs", "meta"}
META_KEYS = {"qtype", "hallucination_type", "truth", "faithful_verbose", "prior_flipped"}
HALLUCINATION_TYPES = {"object", "attribute", "count", "relation"}


def _items(**options: Any) -> list[dict[str, Any]]:
    return [item for item, _ in generate_items(SyntheticConfig(**options))]


def _texts(item: dict[str, Any]) -> tuple[str, str]:
    """Return (faithful text, hallucinated text)."""
    by_id = {r["id"]: r["text"] for r in item["responses"]}
    truth = item["meta"]["truth"]
    (faithful,) = (text for rid, text in by_id.items() if rid != truth)
    return faithful, by_id[truth]


def _says(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return _items(n_items=N, seed=7, prior_noise=0.2, verbose_p=0.85, gold_share=0.1)


def test_same_seed_gives_identical_zip_bytes(tmp_path):
    seeds = (3, 3, 4)
    paths = [write_package(SyntheticConfig(n_items=30, seed=s), tmp_path / f"{i}.zip") for i, s in enumerate(seeds)]
    first, again, other = (path.read_bytes() for path in paths)
    assert first == again
    assert first != other


def test_package_holds_items_and_decodable_images_at_the_configured_size(tmp_path):
    path = write_package(SyntheticConfig(n_items=25, image_size=64), tmp_path / "demo.zip")
    with zipfile.ZipFile(path) as archive:
        lines = archive.read(ITEMS_NAME).decode("utf-8").splitlines()
        assert len(lines) == 25
        assert set(archive.namelist()) == {ITEMS_NAME} | {json.loads(line)["image"] for line in lines}
        for line in lines:
            assert ", " not in line.split('"prompt"')[0]  # compact separators
            with Image.open(io.BytesIO(archive.read(json.loads(line)["image"]))) as image:
                assert image.format == "PNG"
                assert image.size == (64, 64)
                assert image.mode == "RGB"


def test_every_line_has_the_import_package_shape(items):
    for number, item in enumerate(items, start=1):
        assert REQUIRED_KEYS <= set(item)
        assert item["external_id"] == f"scene-{number:06d}"
        assert item["image"] == f"images/{item['external_id']}.png"
        assert item["prompt"]
        ids = [r["id"] for r in item["responses"]]
        assert all(set(r) == RESPONSE_KEYS and r["text"] for r in item["responses"])
        assert len(ids) == len(set(ids)) == 2
        for pair in item["pairs"] + [label["pair"] for label in item.get("prior", []) + item.get("gold", [])]:
            assert len(pair) == 2 and set(pair) <= set(ids)
        assert set(item["facts"]) == {"caption", "answer"}
        assert set(item["meta"]) == META_KEYS
        assert item["meta"]["qtype"] in QTYPES
        assert item["meta"]["hallucination_type"] in HALLUCINATION_TYPES
        assert item["meta"]["truth"] in ids
        for prior in item["prior"]:
            assert prior["more_hallucinated"] in ids
            assert prior["strength"] in {1, 2, 3, 4}
            assert prior["source"] == "synthetic"
        json.dumps(item)


def test_all_question_types_appear(items):
    assert {item["meta"]["qtype"] for item in items} == set(QTYPES)


def test_truth_matches_the_scene(items):
    """The faithful answer states the short true answer; the hallucinated one contradicts it."""
    expected_type = {
        "counting": {"count"},
        "colour": {"attribute"},
        "existence": {"object"},
        "spatial": {"relation"},
    }
    for item in items:
        faithful, hallucinated = _texts(item)
        qtype, answer = item["meta"]["qtype"], item["facts"]["answer"]
        if qtype == "description":
            claim = re.compile(rf"shows {re.escape(answer.rstrip('.').lower())}[.,]")
            assert claim.search(faithful.lower()) and not claim.search(hallucinated.lower())
            assert item["meta"]["hallucination_type"] in {"object", "attribute"}
        else:
            assert _says(faithful, answer), (faithful, answer)
            assert not _says(hallucinated, answer), (hallucinated, answer)
            assert item["meta"]["hallucination_type"] in expected_type[qtype]


def test_image_shows_exactly_the_colours_of_the_caption(tmp_path):
    path = write_package(SyntheticConfig(n_items=40, seed=5), tmp_path / "demo.zip")
    with zipfile.ZipFile(path) as archive:
        for line in archive.read(ITEMS_NAME).decode().splitlines():
            item = json.loads(line)
            with Image.open(io.BytesIO(archive.read(item["image"]))) as image:
                pixels = {colour for _, colour in image.getcolors(maxcolors=10_000)} - {BACKGROUND}
            named = {name for name, rgb in PALETTE.items() if rgb in pixels}
            assert pixels == {PALETTE[name] for name in named}
            assert named == {name for name in PALETTE if _says(item["facts"]["caption"], name)}


def test_scene_caption_and_render():
    scene = Scene(
        (
            Shape("square", "blue", 20, 20, 12),
            Shape("circle", "red", 50, 20, 12),
            Shape("circle", "red", 80, 50, 12),
            Shape("triangle", "orange", 20, 80, 12),
        )
    )
    assert scene.caption() == "Two red circles, a blue square and an orange triangle."
    image = scene.render()
    assert image.size == (96, 96)
    assert image.getpixel((50, 20)) == PALETTE["red"]
    assert image.getpixel((2, 2)) == BACKGROUND


def test_prior_noise_rate_and_flags(items):
    flipped = [item["meta"]["prior_flipped"] for item in items]
    assert sum(flipped) / N == pytest.approx(0.2, abs=TOLERANCE)
    for item, was_flipped in zip(items, flipped, strict=True):
        assert (item["prior"][0]["more_hallucinated"] != item["meta"]["truth"]) is was_flipped


def test_verbose_p_makes_the_faithful_answer_longer_that_often(items):
    longer = [len(faithful) > len(hallucinated) for faithful, hallucinated in map(_texts, items)]
    assert sum(longer) / N == pytest.approx(0.85, abs=TOLERANCE)
    assert longer == [item["meta"]["faithful_verbose"] for item in items]


def test_verbose_and_terse_answers_carry_the_same_claim():
    """Same seed, opposite styles: the scenes agree and each terse answer sits inside the verbose one."""
    terse_faithful, verbose_faithful = _items(n_items=200, verbose_p=0.0), _items(n_items=200, verbose_p=1.0)
    for terse, verbose in zip(terse_faithful, verbose_faithful, strict=True):
        assert terse["prompt"] == verbose["prompt"] and terse["facts"] == verbose["facts"]
        (t_faithful, t_hallucinated), (v_faithful, v_hallucinated) = _texts(terse), _texts(verbose)
        assert t_faithful.rstrip(".") in v_faithful and len(t_faithful) < len(v_faithful)
        assert v_hallucinated.rstrip(".") in t_hallucinated and len(v_hallucinated) < len(t_hallucinated)


def test_without_verbose_p_styles_are_independent():
    items = _items(n_items=N)
    assert {item["meta"]["faithful_verbose"] for item in items} == {None}
    both_verbose = sum(all(text.startswith(OPENERS) for text in _texts(item)) for item in items)
    assert both_verbose / N == pytest.approx(0.25, abs=TOLERANCE)


def test_gold_share_is_honoured_and_gold_names_the_hallucinated_response(items):
    gold = [item for item in items if "gold" in item]
    assert len(gold) == round(0.1 * N)
    assert all(item["gold"][0]["more_hallucinated"] == item["meta"]["truth"] for item in gold)


def test_faithful_answer_position_is_balanced(items):
    share_r0 = sum(item["meta"]["truth"] == "r1" for item in items) / N
    assert share_r0 == pytest.approx(0.5, abs=TOLERANCE)


def test_optional_parts_are_left_out_unless_asked():
    for item in _items(n_items=50, facts=False):
        assert not {"facts", "prior", "gold"} & set(item)
        assert item["meta"]["prior_flipped"] is None


def test_qtypes_restrict_the_questions():
    assert {item["meta"]["qtype"] for item in _items(n_items=50, qtypes=("spatial",))} == {"spatial"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_items": 0}, "n_items"),
        ({"image_size": 8}, "image_size"),
        ({"prior_noise": 1.5}, "prior_noise"),
        ({"verbose_p": -0.1}, "verbose_p"),
        ({"gold_share": 2.0}, "gold_share"),
        ({"qtypes": ("colour", "size")}, "counting, colour, existence, spatial, description"),
        ({"qtypes": ()}, "qtypes"),
    ],
)
def test_invalid_config_raises(options, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**options)


def test_cli_writes_a_package(tmp_path, capsys):
    out = tmp_path / "demo.zip"
    argv = ["--items", "12", "--seed", "1", "--out", str(out), "--prior-noise", "0.2", "--gold-share", "0.5"]
    assert main([*argv, "--verbose-p", "0.85", "--no-facts"]) == 0
    with zipfile.ZipFile(out) as archive:
        lines = [json.loads(line) for line in archive.read(ITEMS_NAME).decode().splitlines()]
    assert len(lines) == 12
    assert sum("gold" in item for item in lines) == 6
    assert all("prior" in item and "facts" not in item for item in lines)
    assert str(out) in capsys.readouterr().out


def test_cli_rejects_a_bad_rate(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x.zip"), "--prior-noise", "2"])
    assert exit_info.value.code == 2
