"""Every endpoint against every role: who may use it, and that strangers learn nothing (404, not 403)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotate.models import ExportSnapshot, ImportJob, ModelRun
from annotate.services.assignments import assignment_next
from tests.factories import make_pairs

ROLES = ("anonymous", "ann1", "res", "lead", "otherlead", "staff")
DENIED = {401, 403, 404}

# (method, path, allowed roles). {c} is the campaign, {job} an import job, {asg} ann1's assignment, {run} a model run,
# {exp} an export snapshot.
MATRIX = [
    ("get", "/api/v1/campaigns/", {"ann1", "res", "lead", "otherlead", "staff"}),
    ("post", "/api/v1/campaigns/", {"staff"}),
    ("get", "/api/v1/campaigns/{c}/", {"ann1", "res", "lead", "staff"}),
    ("patch", "/api/v1/campaigns/{c}/", {"lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/members/", {"lead", "staff"}),
    ("post", "/api/v1/campaigns/{c}/members/", {"lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/imports/", {"lead", "staff"}),
    ("post", "/api/v1/campaigns/{c}/imports/", {"lead", "staff"}),
    ("get", "/api/v1/imports/{job}/", {"lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/next-pair/", {"ann1", "staff"}),
    ("post", "/api/v1/annotations/", {"ann1"}),
    ("post", "/api/v1/assignments/{asg}/skip/", {"ann1"}),
    ("get", "/api/v1/campaigns/{c}/pairs/", {"res", "lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/annotations/", {"res", "lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/stats/", {"res", "lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/models/", {"lead", "staff"}),
    ("post", "/api/v1/campaigns/{c}/models/", {"lead", "staff"}),
    ("get", "/api/v1/models/{run}/", {"res", "lead", "staff"}),
    ("get", "/api/v1/campaigns/{c}/exports/", {"res", "lead", "staff"}),
    ("post", "/api/v1/campaigns/{c}/exports/", {"res", "lead", "staff"}),
    ("get", "/api/v1/exports/{exp}/", {"res", "lead", "staff"}),
    ("get", "/api/v1/exports/{exp}/download/", {"res", "lead", "staff"}),
    ("post", "/api/v1/users/", {"staff"}),
]

BODIES = {
    "/api/v1/campaigns/": {"name": "Made by staff"},
    "/api/v1/campaigns/{c}/": {"name": "Renamed"},
    "/api/v1/campaigns/{c}/members/": {"username": "ann2", "role": "annotator"},
    "/api/v1/campaigns/{c}/imports/": {},
    # Not {"format": ...}: a GET sends the body as its query, and DRF reads ?format= as a renderer to use.
    "/api/v1/campaigns/{c}/exports/": {"filters": {"test_share": 0.2}},
    "/api/v1/annotations/": {"more_hallucinated": "neither"},
    "/api/v1/users/": {"username": "fresh", "password": "long-enough-pw"},
}


@pytest.fixture
def world(campaign, make_user):
    make_user("staff", staff=True)
    make_pairs(campaign, 3)
    ann1 = get_user_model().objects.get(username="ann1")
    assignment = assignment_next(campaign=campaign, annotator=ann1).assignment
    job = ImportJob.objects.create(campaign=campaign, filename="x.zip", status="failed")
    run = ModelRun.objects.create(campaign=campaign, trigger="labels", status="succeeded")
    export = ExportSnapshot.objects.create(campaign=campaign, format="reward")  # queued: its download answers 409
    return {"c": campaign.pk, "job": job.pk, "asg": assignment.pk, "run": run.pk, "exp": export.pk}


def _client(role: str, api_as) -> APIClient:
    return APIClient() if role == "anonymous" else api_as(role)


@pytest.mark.django_db
@pytest.mark.parametrize("method,path,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_endpoint_refuses_roles_that_must_not_use_it(world, api_as, method, path, allowed):
    url = path.format(**world)
    for role in ROLES:
        body = dict(BODIES.get(path, {}))
        if path == "/api/v1/annotations/":
            body["assignment"] = world["asg"]
        response = getattr(_client(role, api_as), method)(url, body, format="json")
        if role in allowed:
            # Allowed roles pass the gate; they may still fail validation (400) on the minimal body.
            assert response.status_code not in DENIED, f"{role} {method} {url}: {response.status_code}"
        else:
            assert response.status_code in DENIED, f"{role} {method} {url} should be refused"
            assert "results" not in response.json() and "pair" not in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path", [(m, p) for m, p, _ in MATRIX if any(k in p for k in ("{c}", "{job}", "{run}", "{exp}"))]
)
def test_other_campaigns_ids_answer_404(world, api_as, method, path):
    response = getattr(api_as("otherlead"), method)(path.format(**world), BODIES.get(path, {}), format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": response.json()["detail"]}, "a 404 carries no data"


@pytest.mark.django_db
def test_missing_ids_answer_404_like_forbidden_ones(world, api_as):
    assert api_as("otherlead").get("/api/v1/campaigns/999999/").status_code == 404
    assert api_as("lead").get("/api/v1/imports/999999/").status_code == 404
    assert api_as("lead").get("/api/v1/models/999999/").status_code == 404
    assert api_as("lead").get("/api/v1/exports/999999/download/").status_code == 404
