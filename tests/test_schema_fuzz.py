"""The running server against its own OpenAPI schema (issue 6): no 5xx, and every response is one the schema documents.

Schemathesis reads `/api/schema/` from pytest-django's `live_server` (a real HTTP server on the test database),
generates requests for every operation the schema lists, sends each with a real user's token and checks the
response. Operations come from the schema, so endpoints added later are fuzzed without editing this file.

Nothing is excluded. The token endpoint is throttled per client and username, and the schema documents its 429;
uploads, retrains and exports are small and only queued (no worker runs here), so every operation stays fast.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotate.models import Campaign, ImportJob, ModelRun, PairScore
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.assignments import assignment_next
from tests.factories import make_pairs

# Generated requests per operation in the fuzzing phase (positive and negative data), for each user below.
MAX_EXAMPLES = 10
# Who sends the requests. Staff may call every operation, so its run also walks the coverage phase (the
# schema's boundary values, deterministically); the members' runs prove each role's refusals are documented too.
USERS = {"staff": True, "lead": False, "ann1": False, "res": False}


@schemathesis.check
def errors_are_json_with_detail(ctx, response, case) -> None:
    """Every 4xx and 5xx is JSON with a `detail` message (API.md, "REST API")."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        content_type = response.headers.get("content-type", ["nothing"])[0]
        raise AssertionError(f"A {response.status_code} answered {content_type}, not JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str):
        raise AssertionError(f"A {response.status_code} has no `detail` message: {body!r}")


CHECKS = [
    not_a_server_error,
    status_code_conformance,  # every status code answered is documented for the operation
    content_type_conformance,
    response_schema_conformance,
    errors_are_json_with_detail,
]


@pytest.fixture
def seeded(django_db_reset_sequences, campaign, make_user):
    """Seed a small campaign and return the ids of its objects, by the path parameter that names each.

    Four pairs (one gold), a label from each annotator, a lease ann1 holds open, a succeeded model run
    with scores that is the campaign's active model, and a finished import job. Ids start at 1 in every
    test (`django_db_reset_sequences`), so the "Other" campaign is 2 and its objects are strangers' ids.
    """
    make_user("staff", staff=True)
    pairs = make_pairs(campaign, 4, gold=1)
    users = {user.username: user for user in get_user_model().objects.all()}
    label = LabelInput(more_hallucinated="b", strength=3, hallucination_types=("count",), duration_ms=900)
    for username in ("ann1", "ann2"):
        lease = assignment_next(campaign=campaign, annotator=users[username])
        annotation_save(assignment_id=lease.assignment.pk, user_id=users[username].pk, label=label)
    open_lease = assignment_next(campaign=campaign, annotator=users["ann1"]).assignment
    now = timezone.now()
    run = ModelRun.objects.create(
        campaign=campaign,
        trigger=ModelRun.Trigger.LABELS,
        status=ModelRun.Status.SUCCEEDED,
        stage=ModelRun.Stage.DONE,
        progress=1.0,
        metrics={"samples": 4, "labels": {"accuracy": 0.75, "ece": 0.1}, "gold": {"accuracy": 1.0}},
        artifact_sha256="f" * 64,
        started_at=now - timedelta(minutes=1),
        finished_at=now,
    )
    PairScore.objects.bulk_create(
        PairScore(
            run=run,
            pair=pair,
            p_a_better=0.3,
            entropy=0.88,
            mutual_info=0.01,
            text_only_p_a_better=0.5,
            shortcut_score=0.2,
            noise_score=0.4 if index else None,
            weight=1.0,
        )
        for index, pair in enumerate(pairs)
    )
    Campaign.objects.filter(pk=campaign.pk).update(active_model=run)
    job = ImportJob.objects.create(
        campaign=campaign,
        created_by=users["lead"],
        filename="items.jsonl",
        status=ImportJob.Status.SUCCEEDED,
        progress=1.0,
        lines_total=4,
        items_created=4,
        pairs_created=4,
        finished_at=now,
    )
    return {"campaign_id": campaign.pk, "run_id": run.pk, "job_id": job.pk, "assignment_id": open_lease.pk}


def _seeded_id(value, ids: dict, name: str):
    """Return the seeded object's id for an even generated id; odd ones stay (mostly missing, huge or negative)."""
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if name in ids and isinstance(number, int) and not isinstance(number, bool) and number % 2 == 0:
        return ids[name]
    return value


@pytest.fixture(params=list(USERS))
def username(request):
    return request.param


@pytest.fixture
def api_schema(request, live_server, seeded, username):
    # schemathesis 4.32's lazy loader reads and renames `item._nodeid`, which pytest 9.2 no longer has.
    request.node._nodeid = request.node.nodeid
    no_feedback = {"extra-data-sources": {"responses": False}}
    config = schemathesis.Config.from_dict(
        {
            # Deterministic, and not steered by what earlier responses held: CI draws the same requests every run.
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {
                "fuzzing": {**no_feedback, "error-feedback": {"enabled": False}},
                # Boundary values of every field; negative coverage too would send thousands of requests.
                "coverage": {**no_feedback, "enabled": USERS[username], "generation": {"mode": "positive"}},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/", config=config)

    @schema.hook
    def map_case(context, case):
        # Half the generated ids become the seeded objects', so requests reach real rows as well as missing ones.
        for name, value in (case.path_parameters or {}).items():
            case.path_parameters[name] = _seeded_id(value, seeded, name)
        if isinstance(case.body, dict) and "assignment" in case.body:
            case.body["assignment"] = _seeded_id(case.body["assignment"], seeded, "assignment_id")
        return case

    return schema


@pytest.fixture
def auth_headers(api_schema, username):
    token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username=username))
    return {"Authorization": f"Token {token.key}"}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_the_schema_says(case, auth_headers):
    case.call_and_validate(headers=auth_headers, checks=CHECKS)
