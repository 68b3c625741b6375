"""The column-mapping step (API.md, "Import package"): a file in no known layout imports through a mapping,
over the API and on the import page, validated on the whole file first, and a saved mapping is reused."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotate.models import ImportJob, ImportMapping, ImportUpload, Item, PriorLabel
from annotate.services.imports import import_job_run
from tests.rewardlab import test_mapping as rewardlab_mapping
from tests.test_import import data_uri, png, stored_state

MAPPING = {**rewardlab_mapping.MAPPING, "source": "custom"}
ROLES_STATUS = {"anonymous": 401, "ann1": 403, "res": 403, "otherlead": 404, "lead": 202, "staff": 202}
SCRIPT = "<script>alert(1)</script>"


def custom_row(qid: str, winner: str = "A", **fields: object) -> dict:
    return {
        "qid": qid,
        "question": "How many red balls?",
        "img": data_uri(png()),
        "answer_a": "Two red balls.",
        "answer_b": "Three red balls.",
        "winner": winner,
        "caption": "Two red balls on a table.",
        "note": SCRIPT,
        **fields,
    }


def custom_file(name: str, rows: list[dict]) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, "".join(json.dumps(row) + "\n" for row in rows).encode())


def worse_texts(campaign) -> dict[str, str]:
    """Map each item's external_id to the text its prior names as more hallucinated."""
    found = {}
    for prior in PriorLabel.objects.filter(pair__campaign=campaign).select_related("pair__item", "pair__a", "pair__b"):
        pair = prior.pair
        found[pair.item.external_id] = (pair.a if prior.more_hallucinated == "a" else pair.b).text
    return found


@pytest.fixture(autouse=True)
def no_broker():
    """Sending a task goes outside the project: the tests run the job themselves, as the worker would."""
    with mock.patch("annotate.services.jobs.app.send_task"):
        yield


def post_import(client, campaign, upload, mapping):
    body = {"file": upload} | ({} if mapping is None else {"mapping": mapping})
    return client.post(f"/api/v1/campaigns/{campaign.pk}/imports/", body, format="multipart")


@pytest.mark.django_db
def test_api_imports_a_file_through_a_mapping(campaign, api_as):
    upload = custom_file("custom.jsonl", [custom_row("q-1", "A"), custom_row("q-2", "B")])

    response = post_import(api_as("lead"), campaign, upload, json.dumps(MAPPING))

    assert response.status_code == 202, response.json()
    assert response.json()["mapping"]["prompt"] == "question"
    job = import_job_run(job_id=response.json()["id"])
    assert (job.status, job.items_created) == ("succeeded", 2), job.errors
    assert worse_texts(campaign) == {"q-1": "Three red balls.", "q-2": "Two red balls."}
    item = Item.objects.get(external_id="q-1")
    assert item.facts == {"caption": "Two red balls on a table."} and item.meta == {"note": SCRIPT}
    assert set(PriorLabel.objects.values_list("source", flat=True)) == {"custom"}


@pytest.mark.django_db
def test_without_a_mapping_the_same_file_fails_pointing_at_the_mapping_step(campaign, api_as):
    response = post_import(api_as("lead"), campaign, custom_file("custom.jsonl", [custom_row("q-1")]), None)
    job = import_job_run(job_id=response.json()["id"])
    assert job.status == "failed"
    assert job.errors[0]["line"] == 1 and "map its columns on the import page" in job.errors[0]["reason"], job.errors


@pytest.mark.django_db
def test_a_row_that_does_not_fit_the_mapping_rejects_the_whole_file_naming_its_line(campaign, api_as):
    rows = [custom_row("q-1"), custom_row("q-2", "C"), custom_row("q-3", question=None)]
    before = stored_state()
    response = post_import(api_as("lead"), campaign, custom_file("custom.jsonl", rows), json.dumps(MAPPING))

    job = import_job_run(job_id=response.json()["id"])

    assert job.status == "failed"
    assert [(error["line"], error["reason"]) for error in job.errors] == [
        (2, 'column \'winner\' (preference): "C" is not one of "A", "B"'),
        (3, "column 'question' (prompt): expected a non-empty string, got null"),
    ]
    assert stored_state() == before, "nothing was written"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mapping, field",
    [
        (json.dumps({**MAPPING, "preference": {"column": "winner", "values": {"A": 1}}}), "mapping.preference.values"),
        (json.dumps({**MAPPING, "image": "question"}), "mapping.image"),
        (json.dumps({k: v for k, v in MAPPING.items() if k != "prompt"}), "mapping.prompt"),
        ('{"prompt": ', "mapping"),
        ("no-such-mapping", "mapping"),
    ],
)
def test_a_bad_mapping_is_a_400_naming_the_field(campaign, api_as, mapping, field):
    response = post_import(api_as("lead"), campaign, custom_file("custom.jsonl", [custom_row("q-1")]), mapping)

    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()
    assert ImportJob.objects.count() == 0


@pytest.mark.django_db
def test_a_saved_mapping_is_used_by_name(campaign, api_as, client):
    ImportMapping.objects.create(campaign=campaign, name="custom", mapping=MAPPING)

    response = post_import(api_as("lead"), campaign, custom_file("next.jsonl", [custom_row("q-9", "B")]), "custom")

    assert response.status_code == 202, response.json()
    assert import_job_run(job_id=response.json()["id"]).status == "succeeded"
    assert worse_texts(campaign) == {"q-9": "Two red balls."}


@pytest.mark.django_db
def test_only_leads_import_with_a_mapping(campaign, api_as, make_user):
    from rest_framework.test import APIClient

    make_user("staff", staff=True)
    for role, status in ROLES_STATUS.items():
        client = APIClient() if role == "anonymous" else api_as(role)
        upload = custom_file("custom.jsonl", [custom_row(f"q-{role}")])
        response = post_import(client, campaign, upload, json.dumps(MAPPING))
        assert response.status_code == status, (role, response.content)
    assert ImportJob.objects.filter(campaign=campaign).count() == 2


# The import page: preview, map, import, save, reuse.


def preview_upload(client, campaign, upload, **data) -> str:
    response = client.post(reverse("import-preview", args=[campaign.pk]), {"file": upload, **data})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


FORM = {
    "id": "qid",
    "prompt": "question",
    "image": "img",
    "answer_1": "answer_a",
    "answer_2": "answer_b",
    "preference": "column",
    "preference_column": "winner",
    "means": "better",
    "value_1": "A",
    "value_2": "B",
    "fact_caption": "caption",
    "save_as": "custom",
}


@pytest.mark.django_db
def test_the_page_previews_maps_imports_and_saves_the_mapping(campaign, client):
    client.force_login(campaign.created_by)
    url = preview_upload(client, campaign, custom_file("custom.jsonl", [custom_row("q-1"), custom_row("q-2", "B")]))

    page = client.get(url).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and SCRIPT not in page, "file text is escaped"
    assert '<th scope="col">winner</th>' in page

    response = client.post(url, FORM)

    assert response.status_code == 302
    job = ImportJob.objects.get()
    preference = {**MAPPING["preference"], "means": "better"}
    assert (
        job.mapping == {**MAPPING, "preference": preference, "source": "mapping"}
        and job.upload == ImportUpload.objects.get()
    )
    assert ImportMapping.objects.get(campaign=campaign, name="custom").mapping == job.mapping
    assert import_job_run(job_id=job.pk).status == "succeeded"
    assert worse_texts(campaign) == {"q-1": "Three red balls.", "q-2": "Two red balls."}


@pytest.mark.django_db
def test_a_mapping_the_service_refuses_comes_back_on_its_field(campaign, client):
    client.force_login(campaign.created_by)
    url = preview_upload(client, campaign, custom_file("custom.jsonl", [custom_row("q-1")]))

    response = client.post(url, {**FORM, "value_2": ""})

    assert response.status_code == 422
    form = response.context["form"]
    assert "no value names answer 2" in " ".join(form.errors["value_1"])
    assert ImportJob.objects.count() == 0 and ImportMapping.objects.count() == 0


@pytest.mark.django_db
def test_a_saved_mapping_fills_the_form_and_imports_the_next_file(campaign, client):
    client.force_login(campaign.created_by)
    ImportMapping.objects.create(campaign=campaign, name="custom", mapping={**MAPPING, "source": "mapping"})

    url = preview_upload(client, campaign, custom_file("next.jsonl", [custom_row("q-7")]), mapping="custom")
    form = client.get(url).context["form"]
    assert {name: form.initial[name] for name in FORM if name != "save_as"} == {
        name: value for name, value in FORM.items() if name != "save_as"
    }
    response = client.post(
        reverse("import-page", args=[campaign.pk]),
        {"file": custom_file("third.jsonl", [custom_row("q-8")]), "mapping": "custom"},
    )
    assert response.status_code == 302
    job = ImportJob.objects.get(filename="third.jsonl")
    assert job.mapping["prompt"] == "question" and import_job_run(job_id=job.pk).status == "succeeded"


@pytest.mark.django_db
def test_the_preview_names_a_known_layout_and_reads_an_unreadable_file_without_failing(campaign, client, tmp_path):
    client.force_login(campaign.created_by)
    trl = {"prompt": "Q?", "chosen": "A.", "rejected": "B.", "images": ["x.png"]}
    url = preview_upload(client, campaign, custom_file("trl.jsonl", [trl]))
    assert "These rows are in the TRL preference layout" in client.get(url).content.decode()

    url = preview_upload(client, campaign, SimpleUploadedFile("broken.zip", b"not a zip"))
    response = client.get(url)
    assert (
        response.status_code == 200 and "The file cannot be read: not a readable .zip file" in response.content.decode()
    )
    assert Path(ImportUpload.objects.get(filename="broken.zip").file.path).exists()
