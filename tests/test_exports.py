"""Export snapshots (issue 6): every format loads with `datasets`, filters and splits, immutability, round trips.

Most tests write snapshots in this process (`export_snapshot_run`, as the worker's task does); the last
ones go through the API with a real Celery worker, and through a broker outage.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from datasets import load_dataset
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from annotate import clock
from annotate.exceptions import ImportRejectedError
from annotate.exports import labels as export_labels
from annotate.exports.formats import FORMATS
from annotate.exports.labels import Votes
from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    ExportSnapshot,
    Image,
    Item,
    ModelRun,
    Pair,
    PairScore,
    PriorLabel,
    Response,
)
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.campaigns import campaign_create, membership_set
from annotate.services.exports import export_snapshot_create, export_snapshot_run
from annotate.services.imports import import_job_run, import_package
from annotate.services.quality import consensus_refresh
from rewardlab import readers
from tests.conftest import wait_for
from tests.factories import image_stored
from tests.test_loop_worker import broker_unreachable

User = get_user_model()

# What LLaMA-Factory's data/README.md documents for a dataset_info.json entry.
LLAMAFACTORY_KEYS = {
    "hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name", "file_name", "formatting", "ranking", "subset",
    "split", "folder", "num_samples", "columns", "tags",
}  # fmt: skip
LLAMAFACTORY_COLUMNS = {
    "prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos", "audios",
    "chosen", "rejected", "kto_tag",
}  # fmt: skip
LLAMAFACTORY_TAGS = {
    "role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag",
}  # fmt: skip


def textured_image(seed: int) -> Image:
    """Store a small image with texture, so mDPO's crop of it differs from the whole."""
    picture = PILImage.new("RGB", (32, 24))
    picture.putdata(
        [((x * 8 + seed * 37) % 256, (y * 10) % 256, (x * y + seed) % 256) for y in range(24) for x in range(32)]
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return image_stored(buffer.getvalue())


def make_item(campaign: Campaign, external_id: str, image: Image, texts: tuple[str, ...], **fields) -> list[Pair]:
    """Create an item with responses r0, r1, ... and a pair of every two of them."""
    item = Item.objects.create(
        campaign=campaign, external_id=external_id, image=image, prompt=f"What is in {external_id}?", **fields
    )
    responses = [
        Response.objects.create(item=item, external_id=f"r{i}", text=text, model=f"m{i}")
        for i, text in enumerate(texts)
    ]
    return [
        Pair.objects.create(campaign=campaign, item=item, a=a, b=b, needed_labels=campaign.overlap)
        for i, a in enumerate(responses)
        for b in responses[i + 1 :]
    ]


def label(pair: Pair, username: str, choice: str, strength: int | None = None, *, on: date | None = None) -> None:
    """Save a human label through the service, as an annotator's submit does."""
    annotator = User.objects.get(username=username)
    now = clock.now()
    assignment = Assignment.objects.create(
        pair=pair, annotator=annotator, left="b", leased_at=now, expires_at=now + timedelta(hours=1)
    )
    saved = annotation_save(
        assignment_id=assignment.pk, user_id=annotator.pk, label=LabelInput(choice, strength, duration_ms=900)
    )
    annotation = Annotation.objects.get(pk=saved.annotation_id)
    if on is not None:
        Annotation.objects.filter(pk=annotation.pk).update(
            created_at=datetime(on.year, on.month, on.day, 12, tzinfo=UTC)
        )


@pytest.fixture
def pairs(campaign, make_user) -> dict[str, Pair]:
    """A campaign whose pairs cover every case a filter or format tells apart, by name."""
    make_user("ann3")
    membership_set(campaign=campaign, username="ann3", role="annotator")
    scene = make_item(
        campaign, "scene-a", textured_image(1), ("Two cups.", "Three cups.", "A cat."),
        facts={"answer": "two"}, meta={"qtype": "counting"},
    )  # fmt: skip
    named = {"agreed": scene[0], "single": scene[1], "both": scene[2]}
    for index, name in enumerate(("split_vote", "neither", "tie", "prior", "gold", "old", "unlabeled"), start=2):
        named[name] = make_item(campaign, f"scene-{name}", textured_image(index), (f"{name} one.", f"{name} two."))[0]
    label(named["agreed"], "ann1", "b", 3)
    label(named["agreed"], "ann2", "b", 4)
    label(named["single"], "ann1", "a", 2)
    label(named["both"], "ann1", "both")
    label(named["both"], "ann2", "both")
    for username, choice in (("ann1", "b"), ("ann2", "b"), ("ann3", "a")):
        label(named["split_vote"], username, choice, 2)
    label(named["neither"], "ann1", "neither")
    label(named["neither"], "ann2", "neither")
    label(named["tie"], "ann1", "a", 1)
    label(named["tie"], "ann2", "b", 1)
    PriorLabel.objects.create(pair=named["prior"], more_hallucinated="b", strength=2, source="rlaif-v")
    Pair.objects.filter(pk=named["gold"].pk).update(gold_answer="a")
    label(named["gold"], "ann1", "a", 3)
    label(named["old"], "ann1", "b", 1, on=date(2020, 6, 1))
    return named


def export(campaign: Campaign, fmt: str, container: str = "jsonl", **filters) -> ExportSnapshot:
    snapshot = export_snapshot_create(
        campaign=campaign, format=fmt, filters=filters, container=container, created_by=campaign.created_by
    )
    return export_snapshot_run(snapshot_id=snapshot.pk)


def snapshot_path(snapshot: ExportSnapshot) -> Path:
    assert snapshot.status == "succeeded", snapshot.error
    return Path(snapshot.file.path)


def unpack(snapshot: ExportSnapshot, folder: Path) -> Path:
    with zipfile.ZipFile(snapshot_path(snapshot)) as archive:
        archive.extractall(folder)
    return folder


def loaded(folder: Path, cache: Path) -> dict:
    """Load every split file with `datasets`, as the dataset card says."""
    files = {
        split: str(folder / f"{split}.jsonl") for split in ("train", "test") if (folder / f"{split}.jsonl").exists()
    }
    return load_dataset("json", data_files=files, cache_dir=str(cache))


def rows_of(snapshot: ExportSnapshot) -> list[dict]:
    with zipfile.ZipFile(snapshot_path(snapshot)) as archive:
        names = [name for name in ("train.jsonl", "test.jsonl") if name in archive.namelist()]
        return [json.loads(line) for name in names for line in archive.read(name).splitlines()]


def external_ids(snapshot: ExportSnapshot) -> set[str]:
    return {row["external_id"] for row in rows_of(snapshot)}


def user_message(prompt: list) -> str:
    (message,) = prompt
    assert message["role"] == "user" and message["content"][0]["type"] == "image"
    return message["content"][1]["text"]


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_loads_with_datasets(pairs, campaign, fmt, tmp_path):
    snapshot = export(campaign, fmt, test_share=0.0)
    folder = unpack(snapshot, tmp_path / "snapshot")
    dataset = loaded(folder, tmp_path / "hf")["train"]

    assert set(dataset.column_names) == set(FORMATS[fmt].columns), "every column is documented, none is missing"
    assert len(dataset) == snapshot.rows > 0
    for images in dataset["images"] if "images" in dataset.column_names else [[path] for path in dataset["image"]]:
        assert len(images) == 1 and (folder / images[0]).is_file()
    card = (folder / "README.md").read_text()
    assert f"format `{fmt}`" in card and "Krippendorff" in card and str(snapshot.rows) in card
    check = CHECKS.get(fmt)
    if check:
        check(dataset, folder)


def check_reward(dataset, folder) -> None:
    """RewardTrainer reads conversational `prompt`, `chosen`, `rejected` (text messages) and a float `margin`."""
    assert all(isinstance(margin, float) for margin in dataset["margin"])
    by_id = {(r["external_id"], tuple(r["pair"])): r for r in dataset}
    agreed = by_id[("scene-a", ("r0", "r1"))]
    assert agreed["prompt"] == [{"role": "user", "content": "What is in scene-a?"}]
    assert agreed["chosen"] == [{"role": "assistant", "content": "Two cups."}]
    assert agreed["rejected"] == [{"role": "assistant", "content": "Three cups."}] and agreed["chosen_id"] == "r0"
    assert (agreed["strength"], agreed["margin"], agreed["n_labels"], agreed["agreement"]) == (3, 0.6667, 2, 1.0)
    assert agreed["facts"] == {"answer": "two"} and agreed["p_a_better"] is None and agreed["weight"] == 1.0


def check_trl_dpo(dataset, folder) -> None:
    """DPOTrainer's conversational preference: a user turn with the image, one assistant turn each side."""
    for row in dataset:
        assert user_message(row["prompt"]).startswith("What is in")
        for key in ("chosen", "rejected"):
            (message,) = row[key]
            assert message["role"] == "assistant" and message["content"][0]["type"] == "text"


def check_mdpo(dataset, folder) -> None:
    """mDPO's collator reads `img_path` and strings; TRL's messages stay beside them as `*_messages`."""
    messages = dataset.remove_columns(["prompt", "chosen", "rejected"]).rename_columns(
        {"prompt_messages": "prompt", "chosen_messages": "chosen", "rejected_messages": "rejected"}
    )
    check_trl_dpo(messages, folder)
    for row in dataset:
        assert row["img_path"] == row["images"][0] and (folder / row["img_path"]).is_file()
        assert row["prompt"] == (
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. USER: <image>\n"
            f"{user_message(row['prompt_messages'])} ASSISTANT:"
        )
        assert (row["chosen"], row["rejected"]) == (
            row["chosen_messages"][0]["content"][0]["text"], row["rejected_messages"][0]["content"][0]["text"]
        )  # fmt: skip
        (original,), (corrupted,) = row["images"], row["corrupted_images"]
        with PILImage.open(folder / original) as whole, PILImage.open(folder / corrupted) as crop:
            assert whole.size == crop.size and whole.tobytes() != crop.tobytes()


def check_llamafactory(dataset, folder) -> None:
    info = json.loads((folder / "dataset_info.json").read_text())
    (entry,) = info.values()
    assert set(entry) <= LLAMAFACTORY_KEYS and set(entry["columns"]) <= LLAMAFACTORY_COLUMNS
    assert set(entry["tags"]) <= LLAMAFACTORY_TAGS
    assert entry["file_name"] == "train.jsonl" and entry["formatting"] == "sharegpt" and entry["ranking"] is True
    assert set(entry["columns"].values()) <= set(dataset.column_names)
    for row in dataset:
        (turn,) = row["conversations"]
        assert turn["from"] == "human" and turn["value"].count("<image>") == len(row["images"]) == 1
        assert row["chosen"]["from"] == row["rejected"]["from"] == "gpt"


def check_llava_rlhf(dataset, folder) -> None:
    """LLaVA-RLHF: output_1 is a, output_2 is b, `preference` the better one; one <image> opens the question."""
    for row in dataset:
        assert row["preference"] in (1, 2) and row["conversations"][0]["value"].startswith("<image>\n")
        assert row["output_1"]["from"] == row["output_2"]["from"] == "llava"
    agreed = next(row for row in dataset if row["id"] == "scene-a:r0:r1")
    assert (agreed["output_1"]["value"], agreed["preference"]) == ("Two cups.", 1), "b is the more hallucinated"


def check_kto(dataset, folder) -> None:
    labels = {(row["external_id"], row["response_id"]): row["label"] for row in dataset}
    assert labels[("scene-a", "r0")] in (True, False)
    assert (labels[("scene-neither", "r0")], labels[("scene-neither", "r1")]) == (True, True)
    both = [row["label"] for row in dataset if row["more_hallucinated"] == "both"]
    assert both == [False, False]
    assert all(isinstance(row["label"], bool) for row in dataset)


CHECKS = {
    "reward": check_reward,
    "trl-dpo": check_trl_dpo,
    "mdpo": check_mdpo,
    "llamafactory": check_llamafactory,
    "llava-rlhf": check_llava_rlhf,
    "kto": check_kto,
}


def pair_names(pairs: dict[str, Pair], snapshot: ExportSnapshot) -> set[str]:
    """Name the pairs a paired snapshot has rows for."""
    names = {(p.item.external_id, p.a.external_id, p.b.external_id): name for name, p in pairs.items()}
    return {names[(row["external_id"], *row["pair"])] for row in rows_of(snapshot)}


@pytest.mark.django_db
def test_filters_change_the_rows_as_asked(pairs, campaign):
    run = ModelRun.objects.create(campaign=campaign, trigger="lead", status="succeeded")
    for name, pair in pairs.items():
        PairScore.objects.create(
            run=run, pair=pair, p_a_better=0.7, entropy=0.88, mutual_info=0.01, text_only_p_a_better=0.5,
            shortcut_score=0.4, noise_score=0.9 if name == "single" else 0.1, weight=0.8,
        )  # fmt: skip
    Campaign.objects.filter(pk=campaign.pk).update(active_model=run)
    campaign.refresh_from_db()
    everything = {"agreed", "single", "split_vote", "gold", "old"}  # ties, both, neither and unlabeled give no pair

    default = export(campaign, "reward")
    assert pair_names(pairs, default) == everything
    row = next(row for row in rows_of(default) if row["external_id"] == "scene-split_vote")
    assert (row["p_a_better"], row["weight"], row["agreement"], row["n_labels"]) == (0.7, 0.8, 0.6667, 3)
    assert pair_names(pairs, export(campaign, "reward", min_agreement=0.9)) == everything - {"split_vote"}
    assert pair_names(pairs, export(campaign, "reward", min_labels=2)) == {"agreed", "split_vote"}
    assert pair_names(pairs, export(campaign, "reward", exclude_suspected_noise=True)) == everything - {"single"}
    assert pair_names(pairs, export(campaign, "reward", gold="exclude")) == everything - {"gold"}
    assert pair_names(pairs, export(campaign, "reward", gold="only")) == {"gold"}
    assert pair_names(pairs, export(campaign, "reward", labeled_to=date(2020, 12, 31))) == {"old"}
    assert pair_names(pairs, export(campaign, "reward", labeled_from=date(2021, 1, 1))) == everything - {"old"}
    with_priors = export(campaign, "reward", labels="with_priors")
    assert pair_names(pairs, with_priors) == everything | {"prior"}
    prior = next(row for row in rows_of(with_priors) if row["external_id"] == "scene-prior")
    assert (prior["label_source"], prior["weight"], prior["rejected"][0]["content"]) == ("prior", 0.4, "prior two.")
    gold = next(row for row in rows_of(default) if row["external_id"] == "scene-gold")
    assert (gold["label_source"], gold["rejected_id"], gold["strength"]) == ("gold", "r0", 3)


@pytest.mark.django_db
def test_the_split_is_by_image_so_no_image_or_item_is_in_both(campaign):
    shared = textured_image(50)
    for index in range(16):
        image = shared if index < 3 else textured_image(100 + index)
        (pair,) = make_item(campaign, f"item-{index:02d}", image, ("One.", "Two."))
        label(pair, "ann1", "b", 2)

    snapshot = export(campaign, "reward", test_share=0.5)
    sides: dict[str, set[str]] = {"train": set(), "test": set()}
    images: dict[str, set[str]] = {"train": set(), "test": set()}
    for row in rows_of(snapshot):
        sides[row["split"]].add(row["external_id"])
        images[row["split"]].update(row["images"])
    assert sides["train"] and sides["test"], "both splits have rows"
    assert not sides["train"] & sides["test"] and not images["train"] & images["test"]
    assert len({next(side for side in sides if f"item-{i:02d}" in sides[side]) for i in range(3)}) == 1
    again = {row["external_id"]: row["split"] for row in rows_of(export(campaign, "kto", test_share=0.5))}
    assert all(again[external_id] == split for split in sides for external_id in sides[split])


@pytest.mark.django_db
def test_a_snapshot_is_fixed_when_asked_for_and_downloads_byte_identical(pairs, campaign, api_as):
    snapshot = export_snapshot_create(campaign=campaign, format="mdpo", filters={}, created_by=campaign.created_by)
    label(pairs["unlabeled"], "ann1", "a", 4)  # given after the snapshot was asked for, before a worker wrote it
    snapshot = export_snapshot_run(snapshot_id=snapshot.pk)
    assert "scene-unlabeled" not in external_ids(snapshot)
    assert snapshot.rows == 5 and len(snapshot.sha256) == 64

    researcher = api_as("res")
    url = f"/api/v1/exports/{snapshot.pk}/download/"
    first = researcher.get(url)
    body = b"".join(first.streaming_content)
    assert hashlib.sha256(body).hexdigest() == snapshot.sha256
    assert int(first["Content-Length"]) == len(body) == snapshot.size_bytes
    assert first["ETag"] == f'"{snapshot.sha256}"' and first["Content-Type"] == "application/zip"
    assert f'filename="rewardlab-c{campaign.pk}-snapshot{snapshot.pk}-mdpo.zip"' in first["Content-Disposition"]

    label(pairs["tie"], "ann3", "b", 2)  # a later label
    second = researcher.get(url)
    assert b"".join(second.streaming_content) == body
    assert researcher.get(url, headers={"If-None-Match": first["ETag"]}).status_code == 304
    # A worker that died mid-run leaves the snapshot running; the redelivered task writes the same bytes.
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(status="running")
    assert export_snapshot_run(snapshot_id=snapshot.pk).sha256 == snapshot.sha256
    assert snapshot_path(snapshot).read_bytes() == body
    fresh = export(campaign, "mdpo")
    assert "scene-unlabeled" in external_ids(fresh)
    with zipfile.ZipFile(snapshot_path(snapshot)) as old, zipfile.ZipFile(snapshot_path(fresh)) as new:
        name = next(name for name in old.namelist() if name.startswith("corrupted/"))
        assert old.read(name) == new.read(name), "the corrupted image is seeded by the pair"


@pytest.mark.django_db
@pytest.mark.parametrize("container", ["jsonl", "parquet"])
def test_a_reward_export_imports_back_into_a_new_campaign_and_reads_with_rewardlab(pairs, campaign, api_as, container):
    snapshot = export(campaign, "reward", container, test_share=0.5, labels="with_priors")
    download = api_as("res").get(f"/api/v1/exports/{snapshot.pk}/download/")
    copy = campaign_create(created_by=campaign.created_by, name="Round trip")
    rows = rows_of(export(campaign, "reward", test_share=0.5, labels="with_priors"))
    assert {row["split"] for row in rows} == {"train", "test"}, "both split files are read"

    # The downloaded zip goes back in as it is: its split files (JSONL, or the Hub layout's Parquet shards)
    # are read as TRL preference rows.
    upload = SimpleUploadedFile("snapshot.zip", b"".join(download.streaming_content))
    with mock.patch("annotate.services.jobs.app.send_task"):
        created = api_as("lead").post(f"/api/v1/campaigns/{copy.pk}/imports/", {"file": upload}, format="multipart")
    assert created.status_code == 202, created.json()
    job = import_job_run(job_id=created.json()["id"])

    assert job.status == "succeeded", job.errors
    assert job.items_created == job.pairs_created == PriorLabel.objects.filter(pair__campaign=copy).count() == 6
    originals = {(p.item.external_id, p.a.external_id, p.b.external_id): p for p in pairs.values()}
    for item in Item.objects.filter(campaign=copy).select_related("image"):
        original = originals[(item.meta["external_id"], *item.meta["pair"])]
        assert (item.prompt, item.image_id) == (original.item.prompt, original.item.image_id)
        pair = item.pairs.select_related("a", "b").get()
        assert {pair.a.text, pair.b.text} == {original.a.text, original.b.text}
        worse = pair.a if pair.prior_labels.get().more_hallucinated == "a" else pair.b
        rejected = original.a if item.meta["rejected_id"] == original.a.external_id else original.b
        assert worse.text == rejected.text, "the label's direction survives"
        assert item.meta["weight"] > 0 and item.meta["split"] in ("train", "test")

    with readers.load_dataset(snapshot_path(snapshot)) as data:
        assert len(data.pairs) == len(data.labels) == 6
        by_key = {(data.items[p.item].external_id, p.a_id, p.b_id): i for i, p in enumerate(data.pairs)}
        agreed = data.labels[by_key[("scene-a", "r0", "r1")]]
        assert (agreed.more_hallucinated, agreed.strength, agreed.source) == ("b", 3, "human")
        assert data.labels[by_key[("scene-prior", "r0", "r1")]].weight == 0.5
        assert data.read_image(data.items[0].image).startswith(b"\x89PNG")


@pytest.mark.django_db
def test_a_bad_row_in_a_snapshot_is_named_by_its_split_file(pairs, campaign, tmp_path):
    folder = unpack(export(campaign, "reward", test_share=0.5), tmp_path / "snapshot")
    lines = (folder / "train.jsonl").read_text().splitlines()
    (folder / "train.jsonl").write_text("\n".join([*lines[:1], '{"prompt": 3}', *lines[1:]]) + "\n")
    copy = campaign_create(created_by=campaign.created_by, name="Round trip")

    with pytest.raises(ImportRejectedError) as rejected:
        import_package(campaign=copy, path=folder)

    (error,) = rejected.value.errors
    assert (error["file"], error["line"]) == ("train.jsonl", 2), error
    assert "train.jsonl, line 2" in str(rejected.value) and not Item.objects.filter(campaign=copy).exists()


def worse_of(fmt: str, row: dict) -> tuple[str, str]:
    """Return (question, the more hallucinated answer's text) of a trl-dpo or llava-rlhf row."""
    if fmt == "trl-dpo":
        return user_message(row["prompt"]), row["rejected"][0]["content"][0]["text"]
    worse = row["output_2"] if row["preference"] == 1 else row["output_1"]
    return row["conversations"][0]["value"].removeprefix("<image>\n"), worse["value"]


@pytest.mark.django_db
@pytest.mark.parametrize("container", ["jsonl", "parquet"])
@pytest.mark.parametrize("fmt", ["trl-dpo", "llava-rlhf"])
def test_trl_dpo_and_llava_rlhf_exports_import_back(pairs, campaign, fmt, container):
    snapshot = export(campaign, fmt, container)
    rows = rows_of(export(campaign, fmt))
    copy = campaign_create(created_by=campaign.created_by, name="Round trip")

    assert import_package(campaign=copy, path=snapshot_path(snapshot)).priors == len(rows) == 5
    imported = set()
    for item in Item.objects.filter(campaign=copy):
        pair = item.pairs.select_related("a", "b").get()
        imported.add((item.prompt, (pair.a if pair.prior_labels.get().more_hallucinated == "a" else pair.b).text))
    assert imported == {worse_of(fmt, row) for row in rows}


@pytest.mark.django_db
def test_an_annotations_export_reads_with_rewardlab(pairs, campaign):
    snapshot = export(campaign, "annotations", gold="exclude")

    with readers.load_dataset(snapshot_path(snapshot)) as data:
        assert len(data.labels) == snapshot.rows == Annotation.objects.exclude(pair=pairs["gold"]).count()
        assert all(label.source == "human" for label in data.labels)
        scene = next(item for item in data.items if item.external_id == "scene-a")
        assert scene.facts == {"answer": "two"} and scene.meta == {"qtype": "counting"}
    row = rows_of(snapshot)[0]
    assert row["annotator"].startswith("ann-") and row["shown_left"] == "b" and row["duration_ms"] == 900


def crowd(campaign: Campaign, make_user, pairs: int) -> list[Pair]:
    """Label `pairs` pairs by three annotators: two careful ones, one who disagrees on every fourth pair."""
    for username in ("c1", "c2", "c3"):
        make_user(username)
        membership_set(campaign=campaign, username=username, role="annotator")
    image = textured_image(0)
    made = [make_item(campaign, f"crowd-{i}", image, ("One.", "Two."))[0] for i in range(pairs)]
    for i, pair in enumerate(made):
        truth = "ab"[i % 2]
        for username in ("c1", "c2", "c3"):
            wrong = username == "c3" and i % 4 == 0
            label(pair, username, {"a": "b", "b": "a"}[truth] if wrong else truth, 1 + i % 4)
    return made


def verdicts_by_pair(votes: Votes, made: list[Pair]) -> dict[int, tuple]:
    verdicts = {}
    for pair in sorted(made, key=lambda pair: pair.pk):
        verdict = votes.verdict(votes.index(pair.pk), source="human")
        verdicts[pair.pk] = (verdict.more_hallucinated, verdict.strength, verdict.agreement, verdict.method)
    return verdicts


@pytest.mark.django_db
def test_a_snapshot_decides_pairs_block_by_block_exactly_as_the_campaigns_consensus(campaign, make_user, monkeypatch):
    made = crowd(campaign, make_user, pairs=30)
    consensus_refresh(campaign=campaign)
    monkeypatch.setattr(export_labels, "BLOCK_LABELS", 7)  # blocks end mid-pair: a pair's 3 labels straddle them

    verdicts = verdicts_by_pair(Votes(Annotation.objects.filter(pair__campaign=campaign)), made)

    stored = {pair.pk: pair.consensus for pair in Pair.objects.filter(campaign=campaign)}
    assert {value[3] for value in verdicts.values()} == {"dawid-skene"}
    for pair_id, (choice, strength, agreement, method) in verdicts.items():
        assert stored[pair_id] == {
            "more_hallucinated": choice, "strength": strength, "agreement": agreement, "method": method
        }  # fmt: skip
    votes = Votes(Annotation.objects.filter(pair__campaign=campaign))
    votes.index(made[-1].pk)
    with pytest.raises(ValueError, match="increasing pair id"):
        votes.index(made[0].pk)


@pytest.mark.django_db
def test_the_pair_api_serves_the_verdict_exports_use_where_dawid_skene_overrules_the_majority(
    campaign, make_user, api_as
):
    """One careful annotator and two who guess (each right on half the pairs, wrong together on a quarter):
    Dawid–Skene learns that only the careful one's word counts and sides with it, where a plain majority
    would follow the two guessers."""
    for username in ("c1", "c2", "c3"):
        make_user(username)
        membership_set(campaign=campaign, username=username, role="annotator")
    image = textured_image(0)
    made = [make_item(campaign, f"crowd-{i}", image, ("One.", "Two."))[0] for i in range(60)]
    for i, pair in enumerate(made):
        truth, wrong = "ab"[i % 2], "ba"[i % 2]
        label(pair, "c1", truth, 3)
        label(pair, "c2", wrong if i % 4 in (0, 1) else truth, 2)
        label(pair, "c3", wrong if i % 4 in (0, 2) else truth, 2)
    consensus_refresh(campaign=campaign)  # what the worker the labels asked for does

    served = {row["id"]: row for row in api_pages(api_as("lead"), f"/api/v1/campaigns/{campaign.pk}/pairs/")}
    exported = {row["external_id"]: row for row in rows_of(export(campaign, "reward"))}
    overruled = 0
    for pair in made:
        consensus, row = served[pair.pk]["consensus"], exported[pair.item.external_id]
        rejected = pair.a.external_id if consensus["more_hallucinated"] == "a" else pair.b.external_id
        assert consensus["method"] == "dawid-skene" and row["label_source"] == "human"
        assert (rejected, consensus["strength"], consensus["agreement"]) == (
            row["rejected_id"], row["strength"], row["agreement"]
        )  # fmt: skip
        overruled += (
            consensus["more_hallucinated"]
            != Counter(a.more_hallucinated for a in pair.annotations.all()).most_common(1)[0][0]
        )
    assert overruled == 15  # the pairs the two guessers got wrong together


def api_pages(client, url: str) -> list[dict]:
    """Every row of a paginated API list."""
    rows = []
    while url:
        body = client.get(url).json()
        rows += body["results"]
        url = body["next"]
    return rows


@pytest.mark.django_db
def test_the_dataset_card_gives_the_alpha_of_the_human_labels(campaign, make_user):
    crowd(campaign, make_user, pairs=30)

    with zipfile.ZipFile(snapshot_path(export(campaign, "reward"))) as archive:
        card = archive.read("README.md").decode()

    assert "(nominal, on the choice): 0." in card and "over 30 pairs with two or more labels" in card, card


@pytest.mark.django_db
def test_past_fit_max_labels_reliabilities_are_fitted_on_a_share_of_the_pairs(campaign, make_user, monkeypatch):
    made = crowd(campaign, make_user, pairs=60)
    labels = Annotation.objects.filter(pair__campaign=campaign)
    full = verdicts_by_pair(Votes(labels), made)
    monkeypatch.setattr(export_labels, "FIT_MAX_LABELS", 90)

    sample = export_labels.fit_sample(labels, rater="annotator_id")
    assert 0.3 < sample.n_pairs / len(made) < 0.7 and len(sample.pair) == 3 * sample.n_pairs, "about every other pair"
    sampled = verdicts_by_pair(Votes(labels), made)

    assert {value[3] for value in sampled.values()} == {"dawid-skene"}
    assert [value[0] for value in sampled.values()] == [value[0] for value in full.values()]


@pytest.mark.django_db
def test_the_api_names_bad_fields_and_refuses_a_download_before_the_file(campaign, api_as):
    researcher = api_as("res")
    url = f"/api/v1/campaigns/{campaign.pk}/exports/"
    cases = [
        ({"format": "reward", "filters": {"min_agreement": 2}}, "filters.min_agreement"),
        ({"format": "mdpo", "filters": {"images": False}}, "filters.images"),
        ({"format": "parquet"}, "format"),
        (
            {"format": "reward", "filters": {"labeled_from": "2026-02-01", "labeled_to": "2026-01-01"}},
            "filters.labeled_to",
        ),
    ]
    for body, field in cases:
        response = researcher.post(url, body, format="json")
        assert response.status_code == 400 and field in response.json()["fields"], response.json()

    created = researcher.post(url, {"format": "annotations", "filters": {"images": False}}, format="json")
    assert created.status_code == 202 and created.json()["status"] == "queued"
    download = researcher.get(f"/api/v1/exports/{created.json()['id']}/download/")
    assert download.status_code == 409 and download.json()["status"] == "queued"
    export_snapshot_run(snapshot_id=created.json()["id"])
    body = researcher.get(f"/api/v1/exports/{created.json()['id']}/").json()
    assert body["status"] == "succeeded" and body["download_url"].endswith("/download/")


@pytest.mark.django_db
def test_without_images_a_snapshot_is_one_bare_jsonl(pairs, campaign, tmp_path):
    snapshot = export(campaign, "trl-dpo", images=False, test_share=0.5)

    assert snapshot.file.name.endswith(".jsonl")
    dataset = load_dataset("json", data_files=snapshot.file.path, cache_dir=str(tmp_path / "hf"))["train"]
    assert len(dataset) == snapshot.rows and set(dataset["split"]) <= {"train", "test"}


@pytest.mark.django_db
def test_the_exports_page_lists_makes_and_polls_snapshots(pairs, campaign, client):
    client.force_login(User.objects.get(username="res"))
    url = f"/campaigns/{campaign.pk}/exports/"
    assert "New export" in client.get(url).content.decode()

    refused = client.post(url, {"format": "reward", "min_agreement": "2"})
    assert refused.status_code == 422 and "Expected a number from 0 to 1" in refused.content.decode()
    made = client.post(url, {"format": "kto", "images": "on", "test_share": "0.2"}, headers={"HX-Request": "true"})
    assert made.status_code == 202 and 'hx-trigger="load delay:1s"' in made.content.decode()
    snapshot = ExportSnapshot.objects.get(campaign=campaign)
    assert snapshot.filters["test_share"] == 0.2 and snapshot.filters["images"] is True

    export_snapshot_run(snapshot_id=snapshot.pk)
    status = client.get(f"/exports/{snapshot.pk}/status/", headers={"HX-Request": "true"})
    assert status.status_code == 286 and f"/api/v1/exports/{snapshot.pk}/download/" in status.content.decode()


def _finished(client, snapshot_id: int) -> dict | None:
    body = client.get(f"/api/v1/exports/{snapshot_id}/").json()
    return body if body["status"] in {"succeeded", "failed"} else None


@pytest.mark.django_db(transaction=True)
def test_a_worker_writes_snapshots_even_those_asked_for_while_the_broker_was_down(campaign, api_as, start_worker):
    for index in range(3):
        (pair,) = make_item(campaign, f"item-{index}", textured_image(index), ("One.", "Two."))
        label(pair, "ann1", "b", 2)
    researcher = api_as("res")
    url = f"/api/v1/campaigns/{campaign.pk}/exports/"
    with broker_unreachable():
        late = researcher.post(url, {"format": "trl-dpo"}, format="json")
    assert late.status_code == 202
    assert ExportSnapshot.objects.get(pk=late.json()["id"]).dispatched_at is None, "nothing reached the broker"

    start_worker()  # a worker's first beat sends what the broker never got
    done = wait_for(lambda: _finished(researcher, late.json()["id"]), what="the worker to write the late snapshot")
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["rows"] == 3, done["error"]

    sent = researcher.post(url, {"format": "llava-rlhf", "filters": {"test_share": 0}}, format="json")
    done = wait_for(lambda: _finished(researcher, sent.json()["id"]), what="the worker to write the snapshot")
    assert done["status"] == "succeeded" and done["progress"] == 1.0, done["error"]
    body = b"".join(researcher.get(done["download_url"]).streaming_content)
    assert hashlib.sha256(body).hexdigest() == done["sha256"]


@pytest.mark.django_db
def test_staff_see_snapshots_in_the_admin_but_cannot_change_one(pairs, campaign, client):
    snapshot = export(campaign, "reward")
    client.force_login(User.objects.create_superuser("root", password="pw-root"))
    url = f"/admin/annotate/exportsnapshot/{snapshot.pk}/change/"

    listing = client.get("/admin/annotate/exportsnapshot/")
    assert listing.status_code == 200 and str(snapshot.rows) in listing.content.decode()
    assert client.get(url).status_code == 200, "a view-only page"
    assert client.post(url, {"rows": 0}).status_code == 403
    assert client.get("/admin/annotate/exportsnapshot/add/").status_code == 403
    assert ExportSnapshot.objects.get(pk=snapshot.pk).rows == snapshot.rows > 0
