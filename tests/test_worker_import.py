"""A lead uploads a package over REST and a real Celery worker process imports it, with progress."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import ImportJob, Item, Pair, PriorLabel
from rewardlab.synthetic import SyntheticConfig, write_package
from tests.conftest import wait_for


def _finished(client, job_id: int):
    body = client.get(f"/api/v1/imports/{job_id}/").json()
    return body if body["status"] in {"succeeded", "failed"} else None


@pytest.mark.django_db(transaction=True)
def test_worker_imports_an_uploaded_package(campaign, api_as, worker_process, tmp_path):
    package = write_package(SyntheticConfig(n_items=40, seed=3, prior_noise=0.2, gold_share=0.1), tmp_path / "s.zip")
    lead = api_as("lead")
    upload = SimpleUploadedFile("scenes.zip", package.read_bytes(), content_type="application/zip")
    created = lead.post(f"/api/v1/campaigns/{campaign.pk}/imports/", {"file": upload}, format="multipart")
    assert created.status_code == 202 and created.json()["status"] == "queued"

    job = wait_for(lambda: _finished(lead, created.json()["id"]), what="the worker to finish the import")
    assert job["status"] == "succeeded", job["errors"]
    assert job["progress"] == 1.0 and job["items_created"] == 40 and job["pairs_created"] == 40
    assert Item.objects.filter(campaign=campaign).count() == 40
    assert PriorLabel.objects.filter(pair__campaign=campaign).count() == 40
    assert Pair.objects.filter(campaign=campaign).exclude(gold_answer="").count() == 4


@pytest.mark.django_db(transaction=True)
def test_worker_rejects_a_bad_package_and_writes_nothing(campaign, api_as, worker_process):
    lines = b'{"external_id": "x", "prompt": "p"}\n'
    upload = SimpleUploadedFile("bad.jsonl", lines, content_type="application/jsonl")
    lead = api_as("lead")
    created = lead.post(f"/api/v1/campaigns/{campaign.pk}/imports/", {"file": upload}, format="multipart")
    job = wait_for(lambda: _finished(lead, created.json()["id"]), what="the worker to reject the import")
    assert job["status"] == "failed" and job["errors"][0]["line"] == 1
    assert Item.objects.count() == 0
    assert ImportJob.objects.get(pk=job["id"]).finished_at is not None
