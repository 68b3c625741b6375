"""Importing public preference data as it is published (API.md, "Import package"): Parquet in the Hugging Face
layout with embedded images, JSON arrays, `image_path`, the RLAIF-V layout and rows that repeat an id.

The Parquet files are written by `datasets` itself (`Dataset.from_dict(...).cast_column(..., Image())`), so
the image cells are `{"bytes", "path"}` structs with the `huggingface` schema metadata, as on the Hub.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import datasets
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.exceptions import ImportRejectedError
from annotate.models import Image, ImportJob, Item, Pair, PriorLabel
from annotate.services.imports import import_package
from rewardlab.readers import load_dataset
from tests.conftest import wait_for
from tests.rewardlab.test_public_layouts import llava_row, vlrb_row
from tests.test_import import BLUE, RED, data_uri, item, png, stored_state
from tests.test_import_public import priors_by_item

GREEN = (0, 255, 0)
IMAGES = {"images/red.png": png(RED), "images/blue.png": png(BLUE)}
datasets.disable_progress_bars()


def embedded(data: bytes, path: str | None = None) -> dict:
    """An image cell as `datasets` writes an `Image` feature."""
    return {"bytes": data, "path": path}


def write_parquet(path: Path, rows: list[dict], *, images: tuple[str, ...] = (), image_lists: tuple[str, ...] = ()):
    """Write rows as `datasets` writes a split to the Hub: image columns cast to Image() or List(Image())."""
    columns = {key: [row.get(key) for row in rows] for key in rows[0]}
    dataset = datasets.Dataset.from_dict(columns)
    for name in images:
        dataset = dataset.cast_column(name, datasets.Image())
    for name in image_lists:
        dataset = dataset.cast_column(name, datasets.List(datasets.Image()))
    dataset.to_parquet(str(path))
    return path


def parquet_bytes(tmp_path: Path, rows: list[dict], **kinds) -> bytes:
    return write_parquet(tmp_path / "shard.parquet", rows, **kinds).read_bytes()


def make_archive(path: Path, files: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rejected(campaign, path: Path) -> list[dict]:
    """Import must fail and leave every table and the image folder as it was; return the errors."""
    before = stored_state()
    with pytest.raises(ImportRejectedError) as caught:
        import_package(campaign=campaign, path=path)
    assert stored_state() == before
    return caught.value.errors


def rlaif_v_hub_row(question: str, color: tuple[int, int, int], idx: int) -> dict:
    """A row of openbmb/RLAIF-V-Dataset as the Hub's Parquet holds it."""
    return {
        "ds_name": "RLAIF-V",
        "image": embedded(png(color), f"{idx}.jpg"),
        "question": question,
        "chosen": "Two red balls.",
        "rejected": "Three red balls.",
        "origin_dataset": "OK-VQA",
        "origin_split": json.dumps({"model": "OmniLMM-12B"}),
        "idx": idx,
        "image_path": f"OK-VQA/{idx}.jpg",
    }


def test_rlaif_v_parquet_from_the_hub_imports_with_embedded_images(campaign, tmp_path):
    rows = [rlaif_v_hub_row("How many red balls?", RED, 0), rlaif_v_hub_row("What colour is the ball?", BLUE, 1)]
    path = write_parquet(tmp_path / "RLAIF-V-Dataset_000.parquet", rows, images=("image",))

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.pairs, summary.priors, summary.images_new) == (2, 2, 2, 2)
    assert set(Image.objects.values_list("sha256", flat=True)) == {sha(png(RED)), sha(png(BLUE))}
    by_prompt = {item.prompt: item for item in Item.objects.select_related("image")}
    red = by_prompt["How many red balls?"]
    assert red.image.sha256 == sha(png(RED))
    # The embedded image wins; the path where the publisher kept the file, and every other column, stay in meta.
    assert red.meta == {
        "ds_name": "RLAIF-V",
        "origin_dataset": "OK-VQA",
        "origin_split": '{"model": "OmniLMM-12B"}',
        "idx": 0,
        "image_path": "OK-VQA/0.jpg",
    }
    prompt, worse, better, strength, source = priors_by_item(campaign)[red.external_id]
    assert (worse, better, strength, source) == ("Three red balls.", "Two red balls.", None, "rlaif-v")


def test_trl_rlaif_v_formatted_parquet_reads_its_images_list(campaign, tmp_path):
    row = {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}],
        "images": [embedded(png(BLUE))],
    }
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", [row], image_lists=("images",))

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.priors) == (1, 1)
    (item_row,) = Item.objects.select_related("image")
    assert item_row.image.sha256 == sha(png(BLUE))
    assert list(priors_by_item(campaign).values()) == [("What colour?", "Red.", "Blue.", None, "trl")]


def test_rewardlab_lines_in_parquet_import_like_jsonl(campaign, tmp_path):
    row = item(
        "scene-1",
        embedded(png(GREEN), "scene-1.png"),
        prior=[{"pair": ["r0", "r1"], "more_hallucinated": "r1", "strength": 2, "source": "rlaif-v"}],
        meta={"qtype": "counting"},
    )
    path = write_parquet(tmp_path / "items.parquet", [row], images=("image",))

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.pairs, summary.priors) == (1, 1, 1)
    scene = Item.objects.select_related("image").get(external_id="scene-1")
    assert scene.image.sha256 == sha(png(GREEN)) and scene.meta == {"qtype": "counting"}
    assert PriorLabel.objects.get().strength == 2


def test_vl_rewardbench_parquet_with_an_embedded_image(campaign, tmp_path):
    row = vlrb_row(image=embedded(png(RED), "images/red.png"))
    path = write_parquet(tmp_path / "vlrb.parquet", [row], images=("image",))

    import_package(campaign=campaign, path=path)

    scene = Item.objects.select_related("image").get(external_id="RLAIF-V-1")
    assert scene.image.sha256 == sha(png(RED))
    assert priors_by_item(campaign)["RLAIF-V-1"][1:3] == ("Three.", "Two.")


def test_a_hub_dataset_zip_reads_every_shard_and_ignores_the_readme(campaign, tmp_path):
    shards = {
        f"rlaif/data/train-0000{i}-of-00002.parquet": parquet_bytes(
            tmp_path,
            [rlaif_v_hub_row(f"Question {i}-{j}?", color, 10 * i + j) for j, color in enumerate((RED, BLUE))],
            images=("image",),
        )
        for i in range(2)
    }
    readme = "---\nconfigs:\n- config_name: default\n  data_files: data/*.parquet\n---\n# RLAIF-V\n"
    path = make_archive(tmp_path / "hub.zip", {"rlaif/README.md": readme, "rlaif/.gitattributes": "", **shards})

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.images_new, summary.images_reused) == (4, 2, 0)
    assert sorted(Item.objects.values_list("prompt", flat=True)) == [
        f"Question {i}-{j}?" for i in (0, 1) for j in (0, 1)
    ]

    # The CLI's loader reads the same zip, images resolved from their cells.
    data = load_dataset(path)
    assert len(data.items) == 4 and {data.images.read(item.image) for item in data.items} == {png(RED), png(BLUE)}


def test_a_bad_row_in_a_shard_is_named_by_file_and_row(campaign, tmp_path):
    good = parquet_bytes(tmp_path, [rlaif_v_hub_row("Q0?", RED, 0)], images=("image",))
    bad_rows = [rlaif_v_hub_row("Q1?", RED, 1), {**rlaif_v_hub_row("Q2?", RED, 2), "chosen": None}]
    bad = parquet_bytes(tmp_path, bad_rows, images=("image",))
    files = {"data/train-00000-of-00002.parquet": good, "data/train-00001-of-00002.parquet": bad}
    path = make_archive(tmp_path / "hub.zip", files)

    errors = rejected(campaign, path)

    assert errors == [
        {
            "row": 2,
            "file": "data/train-00001-of-00002.parquet",
            "reason": "chosen: expected a string, got null",
        }
    ]


def test_a_parquet_column_json_cannot_hold_is_refused_by_name(campaign, tmp_path):
    rows = [{**rlaif_v_hub_row("Q?", RED, 0), "raw": b"\x00\x01"}]
    path = write_parquet(tmp_path / "odd.parquet", rows, images=("image",))

    errors = rejected(campaign, path)

    assert errors == [{"row": 1, "reason": "column 'raw': binary data is read only in an Image column ({bytes, path})"}]


def test_llava_rlhf_json_array_imports_as_published(campaign, tmp_path):
    rows = [llava_row(), llava_row(id="22565", image="images/blue.png", preference=2)]
    array = json.dumps(rows, indent=2)  # published pretty-printed: a row spans many lines
    path = make_archive(tmp_path / "llava.zip", {"llava_7b_v1_preference.json": array, **IMAGES})

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.priors) == (2, 2)
    assert priors_by_item(campaign)["22565"][1:3] == ("Two.", "Three.")
    assert Item.objects.get(external_id="22565").image.sha256 == sha(png(BLUE))


def test_a_bare_json_array_reads_data_uris_and_names_a_bad_row(campaign, tmp_path):
    good = tmp_path / "rows.json"
    good.write_text(json.dumps([llava_row(image=data_uri(png(RED)))]))
    assert import_package(campaign=campaign, path=good).items == 1

    bad = tmp_path / "bad.json"
    rows = [json.dumps(llava_row(id=str(i), image=data_uri(png(RED)))) for i in range(3)]
    rows[2] = rows[2].replace('"preference": 1', '"preference": NaN')
    bad.write_text("[\n" + ",\n".join(rows) + "\n]")
    assert rejected(campaign, bad) == [{"row": 3, "reason": "NaN is not a JSON value"}]

    broken = tmp_path / "broken.json"
    broken.write_text("[" + rows[0] + " " + rows[1] + "]")
    assert rejected(campaign, broken) == [{"row": 2, "reason": "expected ',' or ']' after row 1"}]


def test_vl_rewardbench_with_image_path_as_on_github(campaign, tmp_path):
    row = vlrb_row(image=None, image_path="images/red.png")
    path = make_archive(tmp_path / "vlrb.zip", {"vl_rewardbench.jsonl": json.dumps(row) + "\n", **IMAGES})

    import_package(campaign=campaign, path=path)

    scene = Item.objects.get(external_id="RLAIF-V-1")
    assert scene.image.sha256 == sha(png(RED)) and "image_path" not in scene.meta


def test_image_and_image_path_that_differ_are_refused(campaign, tmp_path):
    row = vlrb_row(image="images/red.png", image_path="images/blue.png")
    path = make_archive(tmp_path / "vlrb.zip", {"items.jsonl": json.dumps(row) + "\n", **IMAGES})

    errors = rejected(campaign, path)

    assert errors[0]["line"] == 1 and "image_path" in errors[0]["reason"] and "differ" in errors[0]["reason"]


def test_rlaif_v_pipeline_jsonl_imports(campaign, tmp_path):
    rows = [
        {
            "image_id": "coco-1",
            "image_path": "images/red.png",
            "question": "How many?",
            "chosen": "Two.",
            "rejected": "Three.",
        },
        {
            "image_id": "coco-2",
            "image_path": "images/blue.png",
            "question": "Colour?",
            "chosen": "Blue.",
            "rejected": "Red.",
        },
    ]
    path = make_archive(tmp_path / "rlaif.zip", {"items.jsonl": "".join(json.dumps(r) + "\n" for r in rows), **IMAGES})

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.priors) == (2, 2)
    found = {prompt: (worse, better) for prompt, worse, better, _, _ in priors_by_item(campaign).values()}
    assert found == {"How many?": ("Three.", "Two."), "Colour?": ("Red.", "Blue.")}
    assert sorted(Item.objects.values_list("meta__image_id", flat=True)) == ["coco-1", "coco-2"]


def test_rows_repeating_an_id_become_one_item_with_each_pair_and_prior(campaign, tmp_path):
    rows = [
        vlrb_row(),  # response ["Three.", "Two."] by model-x, model-y; "Two." preferred
        vlrb_row(image="images/red-copy.png", response=["Two.", "Four."], human_ranking=[0, 1], rationale="Four?"),
        vlrb_row(id="other", image="images/blue.png"),
    ]
    files = {**IMAGES, "images/red-copy.png": png(RED)}  # other bytes-identical file: the same image
    path = make_archive(tmp_path / "vlrb.zip", {"items.jsonl": "".join(json.dumps(r) + "\n" for r in rows), **files})

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.pairs, summary.priors) == (2, 3, 3)
    merged = Item.objects.get(external_id="RLAIF-V-1")
    responses = {r.external_id: (r.text, r.model) for r in merged.responses.all()}
    # "Two." by model-x in the second row is another response than "Two." by model-y: text and model both count.
    assert sorted(responses.values()) == [
        ("Four.", "model-y"),
        ("Three.", "model-x"),
        ("Two.", "model-x"),
        ("Two.", "model-y"),
    ]
    assert len(responses) == 4 and "response_0-2" in responses
    assert merged.meta["repeated_rows"][0]["rationale"] == "Four?"
    priors = PriorLabel.objects.filter(pair__item=merged).select_related("pair__a", "pair__b")
    worse = sorted((p.pair.a if p.more_hallucinated == "a" else p.pair.b).text for p in priors)
    assert worse == ["Four.", "Three."]


def test_a_repeated_id_with_another_image_or_prompt_names_both_lines(campaign, tmp_path):
    rows = [vlrb_row(), vlrb_row(image="images/blue.png"), vlrb_row(query="Which ball?")]
    path = make_archive(tmp_path / "vlrb.zip", {"items.jsonl": "".join(json.dumps(r) + "\n" for r in rows), **IMAGES})

    errors = rejected(campaign, path)

    assert [(error["line"], error["reason"]) for error in errors] == [
        (2, "external_id 'RLAIF-V-1': line 2 has another image than line 1"),
        (3, "external_id 'RLAIF-V-1': line 3 has another prompt than line 1"),
    ]


def test_the_cli_loader_merges_repeated_ids_as_the_import_does(tmp_path):
    rows = [vlrb_row(), vlrb_row(response=["Two.", "Four."], human_ranking=[0, 1])]
    path = make_archive(tmp_path / "vlrb.zip", {"items.jsonl": "".join(json.dumps(r) + "\n" for r in rows), **IMAGES})

    data = load_dataset(path)

    assert (len(data.items), len(data.pairs), len(data.labels)) == (1, 2, 2)


@pytest.mark.django_db(transaction=True)
def test_worker_imports_an_uploaded_parquet(campaign, api_as, worker_process, tmp_path):
    rows = [rlaif_v_hub_row("How many red balls?", RED, 0), rlaif_v_hub_row("Colour?", BLUE, 1)]
    data = write_parquet(tmp_path / "train.parquet", rows, images=("image",)).read_bytes()
    lead = api_as("lead")
    upload = SimpleUploadedFile("train-00000-of-00001.parquet", data, content_type="application/vnd.apache.parquet")
    created = lead.post(f"/api/v1/campaigns/{campaign.pk}/imports/", {"file": upload}, format="multipart")
    assert created.status_code == 202, created.json()

    def finished():
        body = lead.get(f"/api/v1/imports/{created.json()['id']}/").json()
        return body if body["status"] in {"succeeded", "failed"} else None

    job = wait_for(finished, what="the worker to import the Parquet file")
    assert job["status"] == "succeeded", job["errors"]
    assert Item.objects.filter(campaign=campaign).count() == 2 and Pair.objects.count() == 2
    assert ImportJob.objects.get(pk=job["id"]).filename == "train-00000-of-00001.parquet"


def test_the_import_page_accepts_a_json_array(campaign, client, tmp_path):
    client.force_login(campaign.created_by)
    upload = SimpleUploadedFile("llava_7b_v1_preference.json", json.dumps([llava_row()]).encode())

    response = client.post(f"/campaigns/{campaign.pk}/import/", {"file": upload})

    assert response.status_code == 302, response.content.decode()[:500]
    assert ImportJob.objects.get().filename == "llava_7b_v1_preference.json"


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("rows.parquet", b"PAR1 not really", "rows.parquet: not a readable Parquet file"),
        ("rows.json", b'{"id": "1"}', "rows.json: expected a JSON array of rows"),
        ("rows.json", b"[] []", "rows.json: expected the end of the file after the array's closing ']'"),
    ],
)
def test_a_file_that_is_not_its_container_is_refused_whole(campaign, tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)

    errors = rejected(campaign, path)

    assert len(errors) == 1 and errors[0]["line"] is None and errors[0]["reason"].startswith(reason), errors
