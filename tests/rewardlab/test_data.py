"""Training data (rewardlab.readers): every accepted layout loads in canonical a/b; a bad file names its line."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
from PIL import Image as PILImage

from rewardlab.data import DataError, Dataset, Label
from rewardlab.image_sources import FolderImages, MemoryImages
from rewardlab.readers import load_dataset
from rewardlab.synthetic import SyntheticConfig, write_package

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), color).save(buffer, "PNG")
    return buffer.getvalue()


def jsonl(rows: list[dict | str]) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def make_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def package_line(external_id: str, image: str, **fields: object) -> dict:
    line = {
        "external_id": external_id,
        "image": image,
        "prompt": "How many red balls are there?",
        "responses": [{"id": "r0", "text": "Two."}, {"id": "r1", "text": "Three."}],
    }
    return {**line, **fields}


def reward_row(external_id: str, pair: list[str], chosen_id: str, **fields: object) -> dict:
    texts = {"r0": "Two.", "r1": "Three.", "r2": "Four."}
    rejected_id = next(i for i in pair if i != chosen_id)
    row = {
        "prompt": f"Question about {external_id}?",
        "chosen": texts[chosen_id],
        "rejected": texts[rejected_id],
        "images": [f"images/{external_id}.png"],
        "margin": 1.0,
        "weight": 1.0,
        "agreement": 1.0,
        "n_labels": 2,
        "external_id": external_id,
        "pair": pair,
        "chosen_id": chosen_id,
        "rejected_id": rejected_id,
    }
    return {**row, **fields}


def annotation_row(more_hallucinated: str, strength: int | None, annotator: str) -> dict:
    return {
        "external_id": "scene-1",
        "pair": ["r0", "r1"],
        "prompt": "How many red balls are there?",
        "image": "images/scene-1.png",
        "a": {"id": "r0", "text": "Two."},
        "b": {"id": "r1", "text": "Three."},
        "facts": {"answer": "two"},
        "meta": {"qtype": "counting"},
        "more_hallucinated": more_hallucinated,
        "strength": strength,
        "annotator": annotator,
        "shown_left": "b",
        "duration_ms": 4200,
        "created_at": "2026-01-01T00:00:00Z",
    }


def without(row: dict, key: str) -> dict:
    return {name: value for name, value in row.items() if name != key}


def expected_answer(truth: str, flipped: bool) -> str:
    """The synthetic pair is always [r0, r1]: the hallucinated one is a when it is r0."""
    return "a" if (truth == "r0") != flipped else "b"


@pytest.fixture(scope="module")
def synthetic_zip(tmp_path_factory) -> Path:
    config = SyntheticConfig(n_items=20, prior_noise=0.2, gold_share=0.2)
    return write_package(config, tmp_path_factory.mktemp("synthetic") / "synthetic.zip")


def assert_synthetic(data: Dataset) -> None:
    assert (len(data.items), len(data.pairs), len(data.labels)) == (20, 20, 24)
    priors = [label for label in data.labels if label.source == "prior"]
    gold = [label for label in data.labels if label.source == "gold"]
    assert (len(priors), len(gold)) == (20, 4)
    for label in data.labels:
        pair = data.pairs[label.pair]
        item = data.items[pair.item]
        assert (pair.a_id, pair.b_id) == ("r0", "r1")
        flipped = label.source == "prior" and item.meta["prior_flipped"]
        assert label.more_hallucinated == expected_answer(item.meta["truth"], flipped)
        assert label.weight == 1.0
    assert all(1 <= label.strength <= 4 for label in priors) and all(label.strength is None for label in gold)
    assert any(item.meta["prior_flipped"] for item in data.items)
    assert data.read_image(data.items[0].image).startswith(PNG_MAGIC)


def test_synthetic_package_zip_loads_in_canonical_order(synthetic_zip):
    with load_dataset(synthetic_zip) as data:
        assert_synthetic(data)
        assert data.items[0].image == "images/scene-000001.png" and data.items[0].meta["qtype"]


def test_folder_package_loads_like_its_zip(synthetic_zip, tmp_path):
    folder = tmp_path / "package"
    with zipfile.ZipFile(synthetic_zip) as archive:
        archive.extractall(folder)

    with load_dataset(folder) as data, load_dataset(synthetic_zip) as zipped:
        assert_synthetic(data)
        assert (data.items, data.pairs, data.labels) == (zipped.items, zipped.pairs, zipped.labels)


def test_bare_jsonl_keeps_offsets_not_data_uris(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(png()).decode()
    prior = [{"pair": ["r0", "r1"], "more_hallucinated": "r1", "strength": 2, "source": "rlaif-v"}]
    path = tmp_path / "items.jsonl"
    path.write_text(jsonl([package_line("a", uri, prior=prior), "", package_line("b", uri)]))

    with load_dataset(path) as data:
        assert [item.external_id for item in data.items] == ["a", "b"]
        assert all(len(item.image) < 20 for item in data.items)
        assert [data.read_image(item.image) for item in data.items] == [png(), png()]
        assert data.labels == [Label(0, "b", 2, "prior")]


def test_reward_export_zip_rebuilds_canonical_pairs_across_files(tmp_path):
    train = [
        reward_row("scene-1", ["r0", "r1"], "r1", weight=0.5, strength=3),
        reward_row("scene-2", ["r0", "r1"], "r0"),
    ]
    test = [reward_row("scene-1", ["r0", "r2"], "r0")]
    images = {f"images/scene-{n}.png": png() for n in (1, 2)}
    path = make_zip(tmp_path / "reward.zip", {"train.jsonl": jsonl(train), "test.jsonl": jsonl(test), **images})

    with load_dataset(path) as data:
        assert [item.external_id for item in data.items] == ["scene-1", "scene-2"]
        pairs = [(data.items[p.item].external_id, p.a_id, p.a_text, p.b_id, p.b_text) for p in data.pairs]
        # test.jsonl sorts before train.jsonl.
        assert pairs == [
            ("scene-1", "r0", "Two.", "r2", "Four."),
            ("scene-1", "r0", "Two.", "r1", "Three."),
            ("scene-2", "r0", "Two.", "r1", "Three."),
        ]
        assert data.labels == [
            Label(0, "b", None, "human"),
            Label(1, "a", 3, "human", weight=0.5),
            Label(2, "b", None, "human"),
        ]
        assert data.read_image("images/scene-2.png") == png()


def test_plain_trl_file_reads_images_beside_it(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "one.png").write_bytes(png())
    rows = [{"prompt": "Q1?", "chosen": "Good.", "rejected": "Bad.", "images": ["images/one.png"]}]
    path = tmp_path / "prefs.jsonl"
    path.write_text(jsonl([*rows, "", {**rows[0], "prompt": "Q2?"}]))

    with load_dataset(path) as data:
        assert [(item.external_id, item.prompt) for item in data.items] == [("row-1", "Q1?"), ("row-3", "Q2?")]
        assert [(p.a_id, p.a_text, p.b_id, p.b_text) for p in data.pairs] == [
            ("chosen", "Good.", "rejected", "Bad.")
        ] * 2
        assert data.labels == [Label(0, "b", None, "human"), Label(1, "b", None, "human")]
        assert data.read_image(data.items[1].image) == png()


def test_annotations_export_groups_labels_by_pair(tmp_path):
    rows = [annotation_row("b", 3, "ann-1"), annotation_row("both", None, "ann-2")]
    path = make_zip(tmp_path / "annotations.zip", {"annotations.jsonl": jsonl(rows), "images/scene-1.png": png()})

    with load_dataset(path) as data:
        assert len(data.items) == len(data.pairs) == 1
        assert data.items[0].facts == {"answer": "two"} and data.items[0].meta == {"qtype": "counting"}
        assert data.labels == [Label(0, "b", 3, "human"), Label(0, "both", None, "human")]


def test_a_loaded_package_pickles_for_dataloader_workers(synthetic_zip):
    with load_dataset(synthetic_zip) as data:
        data.read_image(data.items[0].image)  # the zip is open now

        copy = pickle.loads(pickle.dumps(data))

        assert copy.read_image(copy.items[1].image) == data.read_image(data.items[1].image)
        copy.close()


def test_image_sources_refuse_unsafe_and_unknown_keys(tmp_path):
    (tmp_path / "inside.png").write_bytes(png())
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "link.png").symlink_to(tmp_path / "inside.png")

    with pytest.raises(DataError, match="'..' segment"):
        FolderImages(folder).read("../inside.png")
    with pytest.raises(DataError, match="outside the folder"):
        FolderImages(folder).read("link.png")
    with pytest.raises(DataError, match="'nope.png'"):
        MemoryImages({"a.png": png()}).read("nope.png")


BAD_FILES = {
    "bad JSON on line 3": (
        "prefs.jsonl",
        jsonl([reward_row("scene-1", ["r0", "r1"], "r0"), "", '{"prompt": "Q?", "chosen":']),
        "prefs.jsonl, line 3: not valid JSON",
    ),
    "missing key": (
        "annotations.jsonl",
        jsonl([annotation_row("a", 1, "x"), without(annotation_row("a", 1, "y"), "more_hallucinated")]),
        "annotations.jsonl, line 2: missing key 'more_hallucinated'",
    ),
    "unsafe image path": (
        "prefs.jsonl",
        jsonl([{"prompt": "Q?", "chosen": "a", "rejected": "b", "images": ["../x.png"]}]),
        "prefs.jsonl, line 1: image '../x.png': unsafe path: '../x.png' has a '..' segment",
    ),
    "missing image": (
        "prefs.jsonl",
        jsonl([{"prompt": "Q?", "chosen": "a", "rejected": "b", "images": ["images/nope.png"]}]),
        "prefs.jsonl, line 1: image 'images/nope.png': not in the folder",
    ),
    "unknown layout": (
        "rows.jsonl",
        jsonl([{"instruction": "Q?", "answer": "A."}]),
        "rows.jsonl, line 1: unknown layout: the first row has the keys",
    ),
    "half the identity keys": (
        "prefs.jsonl",
        jsonl([without(reward_row("scene-1", ["r0", "r1"], "r0"), "chosen_id")]),
        "prefs.jsonl, line 1: missing key 'chosen_id'",
    ),
    "strength off the scale": (
        "annotations.jsonl",
        jsonl([annotation_row("a", 9, "x")]),
        "line 1: strength: expected an integer from 1 to 4, got 9",
    ),
    "a package line with a missing image": (
        "items.jsonl",
        jsonl([package_line("a", "data:image/png;base64,AAAA"), package_line("b", "images/red.png")]),
        "items.jsonl, line 2: image 'images/red.png': a bare .jsonl package holds no files",
    ),
}


@pytest.mark.parametrize("name, text, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file_names_the_line_and_reason(tmp_path, name, text, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "scene-1.png").write_bytes(png())
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(DataError) as caught:
        load_dataset(path)

    assert message in str(caught.value)


def test_unknown_layout_lists_the_accepted_ones(tmp_path):
    path = make_zip(tmp_path / "other.zip", {"data/rows.csv": "a,b\n"})

    with pytest.raises(DataError) as caught:
        load_dataset(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: unknown layout")
    assert all(layout in message for layout in ("import package", "reward export", "annotations export"))


def test_unsafe_path_in_a_package_names_the_line(tmp_path):
    lines = [package_line("a", "images/red.png"), package_line("b", "../x.png")]
    path = make_zip(tmp_path / "package.zip", {"items.jsonl": jsonl(lines), "images/red.png": png()})

    with pytest.raises(DataError, match=r"package\.zip, line 2: image '\.\./x\.png': unsafe path"):
        load_dataset(path)
