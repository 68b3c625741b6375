"""Importing the public preference layouts (API.md, "Import package"): items with prior labels, or nothing."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import ImportJob, Item, Pair, PriorLabel
from annotate.services.imports import import_job_run, import_package
from tests.factories import png_bytes
from tests.rewardlab.test_public_layouts import llava_row, trl_row, vlrb_row
from tests.test_import import assert_rejected, data_uri, make_folder, make_jsonl, make_zip

RED, BLUE = (255, 0, 0), (0, 0, 255)
IMAGES = {"images/red.png": png_bytes(RED), "images/blue.png": png_bytes(BLUE)}


def priors_by_item(campaign) -> dict[str, tuple[str, str, str, int | None, str]]:
    """Map each item's external_id to its prompt, the worse and better texts, and the prior's strength and source."""
    found = {}
    for prior in PriorLabel.objects.filter(pair__campaign=campaign).select_related("pair__item", "pair__a", "pair__b"):
        pair = prior.pair
        worse, better = (pair.a, pair.b) if prior.more_hallucinated == "a" else (pair.b, pair.a)
        found[pair.item.external_id] = (pair.item.prompt, worse.text, better.text, prior.strength, prior.source)
    return found


def test_trl_rows_import_as_items_whose_prior_names_the_rejected_response(campaign, tmp_path):
    conversational = trl_row(
        prompt=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}],
        chosen=[{"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}],
        rejected=[{"role": "assistant", "content": "Red."}],
        images=["images/blue.png"],
        id="blue-1",
    )
    path = make_zip(tmp_path / "trl.zip", [trl_row(), conversational], IMAGES)

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.pairs, summary.priors, summary.gold, summary.images_new) == (2, 2, 2, 0, 2)
    by_item = priors_by_item(campaign)
    (hashed,) = set(by_item) - {"blue-1"}
    assert hashed.startswith("trl-")
    assert by_item[hashed] == ("How many red balls?", "Three.", "Two.", None, "trl")
    assert by_item["blue-1"] == ("What colour is it?", "Red.", "Blue.", None, "trl")
    assert {(r.external_id, r.model) for r in Item.objects.get(external_id="blue-1").responses.all()} == {
        ("r0", ""),
        ("r1", ""),
    }
    assert all((pair.a.external_id, pair.b.external_id) == ("r0", "r1") for pair in Pair.objects.all())


def test_llava_rlhf_rows_import_with_their_context(campaign, tmp_path):
    conversations = [
        {"from": "human", "value": "<image>\nDescribe the image."},
        {"from": "gpt", "value": "Red balls on a table."},
        {"from": "human", "value": "How many red balls?"},
        {"from": "gpt", "value": "Two."},
    ]
    rows = [llava_row(conversations=conversations, hallucination=True), llava_row(id=22565, preference=2)]
    path = make_zip(tmp_path / "llava.zip", rows, IMAGES)

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.pairs, summary.priors) == (2, 2, 2)
    assert priors_by_item(campaign) == {
        "22564": ("How many red balls?", "Three.", "Two.", None, "llava-rlhf"),
        "22565": ("How many red balls?", "Two.", "Three.", None, "llava-rlhf"),
    }
    item = Item.objects.get(external_id="22564")
    assert item.meta == {
        "hallucination": True,
        "context": [
            {"role": "user", "text": "Describe the image."},
            {"role": "assistant", "text": "Red balls on a table."},
        ],
        "reference_answer": "Two.",
    }
    assert sorted(item.responses.values_list("external_id", "model")) == [("output_1", "llava"), ("output_2", "llava")]


def test_vl_rewardbench_rows_import_from_a_bare_jsonl_with_data_uris(campaign, tmp_path):
    rows = [
        vlrb_row(image=data_uri(png_bytes(RED)), ground_truth="two"),
        vlrb_row(id="RLAIF-V-2", image=data_uri(png_bytes(BLUE)), human_ranking=[0, 1], query_source="MMMU-Pro"),
    ]
    path = make_jsonl(tmp_path / "vlrb.jsonl", rows)

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.priors, summary.images_new) == (2, 2, 2)
    assert priors_by_item(campaign) == {
        "RLAIF-V-1": ("How many red balls?", "Three.", "Two.", None, "vl-rewardbench"),
        "RLAIF-V-2": ("How many red balls?", "Two.", "Three.", None, "vl-rewardbench"),
    }
    first = Item.objects.get(external_id="RLAIF-V-1")
    assert first.facts == {"answer": "two"}
    assert first.meta == {"judge": "human", "rationale": "There are two.", "query_source": "RLAIF-V"}
    assert Item.objects.get(external_id="RLAIF-V-2").meta["query_source"] == "MMMU-Pro"
    assert sorted(first.responses.values_list("external_id", "model")) == [
        ("response_0", "model-x"),
        ("response_1", "model-y"),
    ]


def test_public_rows_import_from_a_folder(campaign, tmp_path):
    path = make_folder(tmp_path / "package", [vlrb_row(), vlrb_row(id="RLAIF-V-2", image="images/blue.png")], IMAGES)

    assert (import_package(campaign=campaign, path=path).priors, PriorLabel.objects.count()) == (2, 2)


# Each case's rows make one file; the error names `line` and `reason`, and nothing is written.
REJECTED = {
    "trl missing rejected": ([trl_row(), trl_row(prompt="Q2?", rejected=None)], 2, "missing required field 'rejected'"),
    "trl chosen of the wrong type": ([trl_row(chosen=3)], 1, "chosen: expected a string or a list of messages, got 3"),
    "trl image missing from the zip": (
        [trl_row(images=["images/nope.png"])],
        1,
        "'images/nope.png': not in the package",
    ),
    "trl unsafe image path": ([trl_row(images=["../evil.png"])], 1, "'..' segment"),
    "llava repeated id, another prompt": (
        [llava_row(), llava_row(conversations=[{"from": "human", "value": "<image>\nWhich ball is red?"}])],
        2,
        "external_id '22564': line 2 has another prompt than line 1",
    ),
    "llava preference not 1 or 2": ([llava_row(), llava_row(id="2", preference=0)], 2, "preference: expected 1"),
    "llava output of the wrong type": ([llava_row(output_2=["Three."])], 1, "output_2: expected an object"),
    "llava repeated id, another image": (
        [llava_row(), llava_row(image="images/blue.png")],
        2,
        "external_id '22564': line 2 has another image than line 1",
    ),
    "vlrb ranking not a permutation": ([vlrb_row(human_ranking=[1, 1])], 1, "human_ranking: expected [0, 1] or [1, 0]"),
    "vlrb missing query": ([vlrb_row(id="a"), vlrb_row(query=None)], 2, "missing required field 'query'"),
    "a file mixing layouts": ([trl_row(), vlrb_row()], 2, "a VL-RewardBench row in a file of TRL preference rows"),
    "a row mixing layouts": ([llava_row(chosen="Two.")], 1, "the row mixes layouts"),
    "an unknown first row": ([{"instruction": "Q?"}, trl_row()], 1, "unknown layout"),
    "a row mixing RLAIF-V and TRL": ([trl_row(question="Q?")], 1, "RLAIF-V fields (question) and TRL preference"),
}


@pytest.mark.parametrize("rows, line, reason", REJECTED.values(), ids=REJECTED.keys())
def test_bad_public_row_rejects_the_whole_file(campaign, tmp_path, rows, line, reason):
    path = make_zip(tmp_path / "bad.zip", rows, IMAGES)

    assert_rejected(campaign, path, line=line, reason=reason)


def test_bare_jsonl_of_public_rows_needs_data_uris(campaign, tmp_path):
    path = make_jsonl(tmp_path / "trl.jsonl", [trl_row(images=[data_uri(png_bytes(RED))]), trl_row(prompt="Q2?")])

    assert_rejected(campaign, path, line=2, reason="give the image as a data: URI")


def test_reimporting_rows_without_ids_is_refused(campaign, tmp_path):
    path = make_zip(tmp_path / "trl.zip", [trl_row()], IMAGES)
    import_package(campaign=campaign, path=path)

    assert_rejected(campaign, path, line=1, reason="already exists in campaign")


def test_lead_uploads_a_public_layout_over_rest(campaign, api_as, tmp_path, django_capture_on_commit_callbacks):
    path = make_zip(tmp_path / "llava.zip", [llava_row(), llava_row(id="22565", preference=2)], IMAGES)
    lead = api_as("lead")
    upload = SimpleUploadedFile("llava.zip", Path(path).read_bytes(), content_type="application/zip")

    with mock.patch("annotate.services.jobs.app.send_task") as send:
        with django_capture_on_commit_callbacks(execute=True):
            created = lead.post(f"/api/v1/campaigns/{campaign.pk}/imports/", {"file": upload}, format="multipart")
    assert created.status_code == 202, created.json()
    send.assert_called_once_with("workers.tasks.import_job_run", (created.json()["id"],), queue="cpu")
    import_job_run(job_id=created.json()["id"])

    job = lead.get(f"/api/v1/imports/{created.json()['id']}/").json()
    assert (job["status"], job["items_created"], job["pairs_created"], job["errors"]) == ("succeeded", 2, 2, [])
    assert PriorLabel.objects.filter(pair__campaign=campaign, source="llava-rlhf").count() == 2
    assert ImportJob.objects.get(pk=job["id"]).items.count() == 2
