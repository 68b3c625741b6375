"""The Parquet container (issue 17): a snapshot as a Hugging Face dataset repository that `datasets` loads as is.

Snapshots are written in this process (`export_snapshot_run`, as the worker's task does) from the campaign
of tests/test_exports.py, and read back with `datasets` itself, from another working directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Features, load_dataset
from django.conf import settings
from django.contrib.auth import get_user_model
from PIL import Image as PILImage
from rest_framework.test import APIClient
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from trl.data_utils import is_conversational

from annotate.exports import parquet
from annotate.exports.formats import FORMATS
from annotate.models import ExportSnapshot
from annotate.services.exports import export_snapshot_create, export_snapshot_run
from tests.test_api_permissions import DENIED, ROLES
from tests.test_exports import label, make_item, pairs, snapshot_path, textured_image  # noqa: F401 (a fixture)


def export(campaign, fmt: str, **filters) -> ExportSnapshot:
    snapshot = export_snapshot_create(
        campaign=campaign, format=fmt, filters=filters, container="parquet", created_by=campaign.created_by
    )
    return export_snapshot_run(snapshot_id=snapshot.pk)


def unpack(snapshot: ExportSnapshot, folder: Path) -> Path:
    with zipfile.ZipFile(snapshot_path(snapshot)) as archive:
        archive.extractall(folder)
    return folder


def header(folder: Path) -> dict:
    """Return the YAML header of the README.md, as the Hub and `datasets` read it."""
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def load_elsewhere(folder: Path, tmp_path: Path):
    """Load the folder with `datasets` as its card says, from a working directory that is not the folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        return load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    finally:
        os.chdir(cwd)


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_the_zip_is_a_dataset_repository_with_a_yaml_header_naming_features_and_splits(campaign, tmp_path):
    snapshot = export(campaign, "trl-dpo", test_share=0.5)
    with zipfile.ZipFile(snapshot_path(snapshot)) as archive:
        names = archive.namelist()
        (stamp,) = {info.date_time for info in archive.infolist()}  # the snapshot's, to the zip's 2 seconds
    assert stamp[:5] == snapshot.created_at.timetuple()[:5] and snapshot.created_at.second - stamp[5] in (0, 1)
    assert names == ["data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet", "README.md"]
    assert snapshot.file.name.endswith("-trl-dpo-parquet.zip")
    folder = unpack(snapshot, tmp_path / "repo")

    info = header(folder)
    assert info["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}],
        }
    ]
    features = {feature["name"]: feature for feature in info["dataset_info"]["features"]}
    assert list(features) == list(FORMATS["trl-dpo"].columns)
    assert features["images"] == {"name": "images", "list": "image"} and features["margin"]["dtype"] == "float64"
    splits = {split["name"]: split["num_examples"] for split in info["dataset_info"]["splits"]}
    assert sum(splits.values()) == snapshot.rows == 5 and set(splits) == {"train", "test"}
    # The header's features are the ones datasets reads from the Parquet schema's `huggingface` metadata.
    schema = pq.read_schema(folder / "data/train-00000-of-00001.parquet")
    assert Features._from_yaml_list(info["dataset_info"]["features"]) == Features.from_arrow_schema(schema)
    card = (folder / "README.md").read_text()
    assert "format `trl-dpo`" in card and "Krippendorff" in card and "load_dataset(" in card


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
@pytest.mark.parametrize("fmt", ["trl-dpo", "reward"])
def test_load_dataset_on_the_folder_gives_pil_images_from_any_directory(campaign, fmt, tmp_path):
    snapshot = export(campaign, fmt, test_share=0.0)
    dataset = load_elsewhere(unpack(snapshot, tmp_path / "repo"), tmp_path)["train"]

    assert len(dataset) == snapshot.rows == 5 and dataset.column_names == list(FORMATS[fmt].columns)
    for row in dataset:
        (image,) = row["images"]
        assert isinstance(image, PILImage.Image) and image.size == (32, 24)
    row = next(row for row in dataset if row["external_id"] == "scene-a")
    with PILImage.open(io.BytesIO(textured_image(1).file.read())) as original:
        assert row["images"][0].tobytes() == original.convert("RGB").tobytes()
    assert json.loads(row["facts"]) == {"answer": "two"} and json.loads(row["meta"]) == {"qtype": "counting"}


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_loads_with_its_columns_and_images(campaign, fmt, tmp_path):
    snapshot = export(campaign, fmt, test_share=0.0)
    dataset = load_elsewhere(unpack(snapshot, tmp_path / "repo"), tmp_path)["train"]

    assert dataset.column_names == list(FORMATS[fmt].columns) and len(dataset) == snapshot.rows > 0
    image = dataset[0]["images"][0] if "images" in dataset.column_names else dataset[0]["image"]
    assert isinstance(image, PILImage.Image)


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_mdpo_rows_embed_the_image_and_its_corrupted_copy_and_keep_mdpos_fields(campaign, tmp_path):
    dataset = load_elsewhere(unpack(export(campaign, "mdpo", test_share=0.0), tmp_path / "repo"), tmp_path)["train"]

    for row in dataset:
        (whole,), (crop,) = row["images"], row["corrupted_images"]
        assert whole.size == crop.size and whole.tobytes() != crop.tobytes()
        assert row["img_path"].startswith("images/") and row["prompt"].endswith(" ASSISTANT:")
        assert "USER: <image>\n" in row["prompt"] and isinstance(row["chosen"], str)


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_without_images_image_columns_hold_paths(campaign, tmp_path):
    snapshot = export(campaign, "llava-rlhf", test_share=0.0, images=False)
    folder = unpack(snapshot, tmp_path / "repo")

    assert {feature["name"]: feature for feature in header(folder)["dataset_info"]["features"]}["image"] == {
        "name": "image",
        "dtype": "string",
    }
    dataset = load_elsewhere(folder, tmp_path)["train"]
    assert all(path.startswith("images/") for path in dataset["image"]) and len(dataset) == snapshot.rows


@pytest.mark.django_db
def test_large_snapshots_are_sharded_and_a_rerun_writes_the_same_bytes(campaign, tmp_path, monkeypatch):
    for index in range(12):
        (pair,) = make_item(campaign, f"item-{index:02d}", textured_image(100 + index), ("One.", "Two."))
        label(pair, "ann1", "b", 2)
    monkeypatch.setattr(parquet, "IMAGE_GROUP_ROWS", 2)
    monkeypatch.setattr(parquet, "SHARD_MAX_ROWS", 4)

    snapshot = export(campaign, "reward", test_share=0.0)
    with zipfile.ZipFile(snapshot_path(snapshot)) as archive:
        shards = [name for name in archive.namelist() if name.startswith("data/")]
    assert shards == [f"data/train-0000{index}-of-00003.parquet" for index in range(3)]
    folder = unpack(snapshot, tmp_path / "repo")
    assert [pq.ParquetFile(folder / name).metadata.num_row_groups for name in shards] == [2, 2, 2]
    dataset = load_elsewhere(folder, tmp_path)["train"]
    assert len(dataset) == 12 and sorted(dataset["external_id"]) == [f"item-{index:02d}" for index in range(12)]

    body = snapshot_path(snapshot).read_bytes()
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(status="running")  # a worker died mid-run
    again = export_snapshot_run(snapshot_id=snapshot.pk)
    assert again.sha256 == snapshot.sha256 == hashlib.sha256(body).hexdigest()
    assert snapshot_path(again).read_bytes() == body


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_a_failed_write_leaves_no_file_and_no_work_folder(campaign, monkeypatch):
    def broken(self, split: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(parquet.ParquetSnapshotWriter, "_flush", broken)
    snapshot = export_snapshot_create(
        campaign=campaign, format="reward", filters={}, container="parquet", created_by=campaign.created_by
    )
    with pytest.raises(OSError):
        export_snapshot_run(snapshot_id=snapshot.pk)

    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and not snapshot.file
    assert not [path for path in Path(settings.MEDIA_ROOT).rglob("*") if "snapshot-" in path.name]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built offline, with a chat template like the ones instruct models ship."""
    words = "[UNK] [EOS] <|user|> <|assistant|> What is in scene-a ? Two cups . Three".split()
    backend = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="[EOS]", chat_template=template)


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_reward_rows_join_question_and_answer_through_the_chat_template(campaign, tmp_path):
    """TRL's RewardTrainer tokenizes prompt + chosen: as messages, the template separates them."""
    dataset = load_elsewhere(unpack(export(campaign, "reward", test_share=0.0), tmp_path / "repo"), tmp_path)
    row = next(row for row in dataset["train"] if row["external_id"] == "scene-a")

    assert is_conversational(row)
    text = tiny_tokenizer().apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    assert text == "<|user|>\nWhat is in scene-a?\n<|assistant|>\nTwo cups.\n"
    card = (tmp_path / "repo" / "README.md").read_text()
    assert "`margin`, which it subtracts" in card and "It ignores `weight`" in card and "`images` (its model" in card


@pytest.mark.django_db
def test_the_container_is_refused_for_a_bad_value_and_recorded(campaign, api_as):
    researcher = api_as("res")
    url = f"/api/v1/campaigns/{campaign.pk}/exports/"

    refused = researcher.post(url, {"format": "reward", "container": "arrow"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["fields"]["container"] == ['"arrow" is not a valid choice; expected jsonl or parquet.']
    made = researcher.post(url, {"format": "reward", "container": "parquet"}, format="json")
    assert made.status_code == 202 and made.json()["container"] == "parquet"
    default = researcher.post(url, {"format": "reward"}, format="json")
    assert default.status_code == 202 and default.json()["container"] == "jsonl"


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_the_exports_page_offers_the_container(campaign, client):
    client.force_login(get_user_model().objects.get(username="res"))
    url = f"/campaigns/{campaign.pk}/exports/"
    assert 'name="container"' in client.get(url).content.decode()

    refused = client.post(url, {"format": "reward", "container": "arrow"})
    assert refused.status_code == 422 and not ExportSnapshot.objects.exists()
    client.post(url, {"format": "reward", "container": "parquet", "images": "on"})
    snapshot = ExportSnapshot.objects.get(campaign=campaign)
    assert snapshot.container == "parquet"
    snapshot = export_snapshot_run(snapshot_id=snapshot.pk)
    assert snapshot.status == "succeeded" and "parquet" in client.get(url).content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("pairs")
def test_every_role_keeps_its_export_permissions_with_the_parquet_container(campaign, api_as, make_user):
    make_user("staff", staff=True)
    allowed = {"res", "lead", "staff"}
    written = export(campaign, "reward")
    for role in ROLES:
        client = APIClient() if role == "anonymous" else api_as(role)
        made = client.post(
            f"/api/v1/campaigns/{campaign.pk}/exports/", {"format": "kto", "container": "parquet"}, format="json"
        )
        download = client.get(f"/api/v1/exports/{written.pk}/download/")
        if role in allowed:
            assert made.status_code == 202 and made.json()["container"] == "parquet", role
            assert download.status_code == 200 and download["Content-Type"] == "application/zip", role
            assert f"snapshot{written.pk}-reward-parquet.zip" in download["Content-Disposition"]
        else:
            assert made.status_code in DENIED and download.status_code in DENIED, role
    assert ExportSnapshot.objects.filter(container="parquet", format="kto").count() == len(allowed)
