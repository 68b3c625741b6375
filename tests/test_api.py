"""REST API v1: the annotator's loop, idempotent submit, data shapes per role, errors as JSON."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import pytest
from django.db import connection
from rest_framework.test import APIClient

from annotate.api.labeling import AnnotationOutput, NextPairOutput
from annotate.models import Annotation, Assignment, Item
from annotate.services.quality import consensus_refresh
from tests.factories import make_pairs


@pytest.fixture
def pairs(campaign):
    campaign.show_facts = False
    campaign.save()
    created = make_pairs(campaign, 3, gold=1)
    item = created[0].item
    item.facts = {"caption": "Two red balls."}
    item.save()
    return created


def _submit(client: APIClient, assignment: int, **label):
    body = {"assignment": assignment, "more_hallucinated": "b", "strength": 3, "duration_ms": 1200, **label}
    return client.post("/api/v1/annotations/", body, format="json")


@pytest.mark.django_db
def test_token_login_then_label_a_pair(campaign, pairs):
    client = APIClient()
    token = client.post("/api/v1/auth/token/", {"username": "ann1", "password": "pw-ann1"}).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    lease = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert lease["left"] in {"a", "b"}
    assert set(lease["pair"]) == {"id", "item", "a", "b"}, "annotators see no gold flag, counts, consensus or scores"
    assert "facts" not in lease["pair"]["item"], "facts stay hidden when the campaign hides them"
    response = _submit(client, lease["assignment"], hallucination_types=["count"], rationale="It says three.")
    assert response.status_code == 201
    body = response.json()
    assert body["more_hallucinated"] == "b" and body["shown_left"] == lease["left"]
    assert body["annotator"].startswith("ann-") and "ann1" not in str(body)


@pytest.mark.django_db
def test_double_submit_makes_one_annotation(campaign, pairs, api_as):
    client = api_as("ann1")
    assignment = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()["assignment"]
    first = _submit(client, assignment)
    second = _submit(client, assignment, more_hallucinated="a", strength=1)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["more_hallucinated"] == "b", "the first label stands"
    assert Annotation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_double_submit_makes_one_annotation(campaign, pairs, api_as):
    assignment = api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()["assignment"]
    codes: list[int] = []

    def submit() -> None:
        codes.append(_submit(api_as("ann1"), assignment).status_code)
        connection.close()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(codes) == [200] * 5 + [201]
    assert Annotation.objects.count() == 1


@pytest.mark.django_db
def test_invalid_labels_get_field_errors_and_save_nothing(campaign, pairs, api_as):
    client = api_as("ann1")
    assignment = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()["assignment"]
    cases = [
        ({"strength": None}, "strength"),
        ({"strength": 9}, "strength"),
        ({"more_hallucinated": "both", "strength": 2}, "strength"),
        ({"more_hallucinated": "c"}, "more_hallucinated"),
        ({"hallucination_types": ["vibes"]}, "hallucination_types"),
        ({"spans": [{"response": "a", "start": 3, "end": 999}]}, "spans"),
    ]
    for label, field in cases:
        response = _submit(client, assignment, **label)
        assert response.status_code == 400, label
        assert response.json()["detail"] and field in response.json()["fields"], response.json()
    assert Annotation.objects.count() == 0
    assert _submit(client, assignment, more_hallucinated="neither", strength=None).status_code == 201


@pytest.mark.django_db
def test_someone_elses_assignment_is_not_found(campaign, pairs, api_as):
    assignment = api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()["assignment"]
    assert _submit(api_as("ann2"), assignment).status_code == 404
    assert api_as("ann2").post(f"/api/v1/assignments/{assignment}/skip/").status_code == 404


@pytest.mark.django_db
def test_next_pair_is_204_when_nothing_is_left(campaign, api_as):
    make_pairs(campaign, 1)
    client = api_as("ann1")
    lease = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    _submit(client, lease["assignment"])
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").status_code == 204


@pytest.mark.django_db
def test_skip_releases_the_lease(campaign, pairs, api_as):
    client = api_as("ann1")
    first = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert client.post(f"/api/v1/assignments/{first['assignment']}/skip/").status_code == 204
    second = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert second["pair"]["id"] != first["pair"]["id"]
    assert Assignment.objects.get(pk=first["assignment"]).status == "skipped"


@pytest.mark.django_db
def test_leads_see_pairs_with_counts_and_consensus(campaign, pairs, api_as):
    for username in ("ann1", "ann2"):
        client = api_as(username)
        while (lease := client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")).status_code == 200:
            _submit(client, lease.json()["assignment"])
    lead = api_as("lead")
    assert lead.get(f"/api/v1/campaigns/{campaign.pk}/pairs/").json()["results"][0]["consensus"] is None
    consensus_refresh(campaign=campaign)  # what that worker does
    body = lead.get(f"/api/v1/campaigns/{campaign.pk}/pairs/?ordering=-priority").json()
    assert body["count"] == 3
    row = body["results"][0]
    assert row["labels"] == 2 and row["consensus"] == {
        "more_hallucinated": "b",
        "strength": 3,
        "agreement": 1.0,
        "method": "majority",
    }
    assert row["a"]["id"] == "r0" and row["item"]["image_url"].startswith("/images/")
    gold = api_as("res").get(f"/api/v1/campaigns/{campaign.pk}/pairs/?is_gold=true").json()
    assert gold["count"] == 1 and gold["results"][0]["is_gold"] is True
    labels = api_as("res").get(f"/api/v1/campaigns/{campaign.pk}/annotations/").json()
    assert len(labels["results"]) == 6 and {"next", "previous"} <= set(labels)


@pytest.mark.django_db
def test_lead_creates_campaign_settings_and_members(campaign, api_as, make_user):
    make_user("admin", staff=True)
    created = api_as("admin").post("/api/v1/campaigns/", {"name": "New", "overlap": 5}, format="json")
    assert created.status_code == 201 and created.json()["overlap"] == 5 and created.json()["role"] == "staff"
    lead = api_as("lead")
    patched = lead.patch(f"/api/v1/campaigns/{campaign.pk}/", {"gold_share": 0.2}, format="json")
    assert patched.status_code == 200 and patched.json()["gold_share"] == 0.2
    bad = lead.patch(f"/api/v1/campaigns/{campaign.pk}/", {"gold_share": 2}, format="json")
    assert bad.status_code == 400 and "gold_share" in bad.json()["fields"]
    make_user("newbie")
    added = lead.post(f"/api/v1/campaigns/{campaign.pk}/members/", {"username": "newbie", "role": "annotator"})
    assert added.status_code == 201
    assert api_as("newbie").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").status_code == 204
    missing = lead.post(f"/api/v1/campaigns/{campaign.pk}/members/", {"username": "ghost", "role": "annotator"})
    assert missing.status_code == 404 and missing.json()["detail"]


@pytest.mark.django_db
def test_staff_create_users(campaign, api_as, make_user):
    make_user("admin", staff=True)
    response = api_as("admin").post("/api/v1/users/", {"username": "carol", "password": "long-enough-pw"})
    assert response.status_code == 201 and "password" not in response.json()
    assert (
        api_as("admin").post("/api/v1/users/", {"username": "carol", "password": "long-enough-pw"}).status_code == 409
    )
    assert api_as("lead").post("/api/v1/users/", {"username": "dave", "password": "long-enough-pw"}).status_code == 403


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/campaigns/{campaign_id}/next-pair/" in schema.content
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_the_labeling_loop_has_a_fixed_query_budget(campaign, api_as, django_assert_num_queries):
    """Next-pair and submit each make one round trip for their work, however large the campaign."""
    make_pairs(campaign, 50)
    client = api_as("ann1")
    client.get("/api/v1/campaigns/")  # token and session lookups warmed
    with django_assert_num_queries(2):  # the token, then one call of rewardlab_lease
        assignment = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()["assignment"]
    with django_assert_num_queries(2):  # the token, then one call of rewardlab_submit
        assert _submit(client, assignment).status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("show_facts", [False, True])
def test_the_next_pair_postgresql_writes_is_the_one_the_serializers_describe(campaign, api_as, show_facts):
    """`rewardlab_lease` builds the JSON itself; it must say exactly what `NextPairOutput` documents."""
    campaign.show_facts = show_facts
    campaign.save()
    (pair,) = make_pairs(campaign, 1, prompt='Is the "ball" red? <b>ünïcode</b> \\ \n', texts=("Ja — rot.", "Nein\t{}"))
    Item.objects.filter(pk=pair.item_id).update(facts={"caption": "Zwei Bälle", "n": 2})
    body = api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assignment = Assignment.objects.get(pk=body["assignment"])
    pair.refresh_from_db()
    expected = NextPairOutput(
        {"assignment": assignment.pk, "expires_at": assignment.expires_at, "left": assignment.left, "pair": pair},
        context={"show_facts": show_facts},
    ).data
    assert datetime.fromisoformat(body.pop("expires_at")) == assignment.expires_at
    expected.pop("expires_at")
    assert body == json.loads(json.dumps(expected))
    assert ("facts" in body["pair"]["item"]) is show_facts


@pytest.mark.django_db
def test_the_annotation_postgresql_writes_is_the_one_the_serializer_describes(campaign, api_as):
    """`rewardlab_submit` builds the JSON itself; it must say exactly what `AnnotationOutput` documents."""
    make_pairs(campaign, 1)
    client = api_as("ann1")
    assignment = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()["assignment"]
    spans = [{"response": "a", "start": 0, "end": 3}]
    body = _submit(client, assignment, hallucination_types=["count"], spans=spans, rationale='"Drei" \u2014 <i>').json()
    expected = AnnotationOutput(Annotation.objects.get(assignment_id=assignment)).data
    assert datetime.fromisoformat(body.pop("created_at")) == datetime.fromisoformat(expected.pop("created_at"))
    assert body == json.loads(json.dumps(expected))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user", "method", "path", "body", "named"),
    [
        ("lead", "patch", "/api/v1/campaigns/{campaign}/", {"overlapp": 3}, "overlapp"),
        (
            "lead",
            "post",
            "/api/v1/campaigns/{campaign}/members/",
            {"username": "ann1", "role": "annotator", "x": 1},
            "x",
        ),
        (
            "lead",
            "post",
            "/api/v1/campaigns/{campaign}/exports/",
            {"format": "reward", "containr": "parquet"},
            "containr",
        ),
        (
            "lead",
            "post",
            "/api/v1/campaigns/{campaign}/exports/",
            {"format": "reward", "filters": {"min_agreemnt": 1}},
            "filters.min_agreemnt",
        ),
        (
            "ann1",
            "post",
            "/api/v1/annotations/",
            {"assignment": 1, "more_hallucinated": "a", "strenght": 2},
            "strenght",
        ),
    ],
)
def test_a_key_the_endpoint_does_not_know_is_refused_by_name(campaign, pairs, api_as, user, method, path, body, named):
    """API.md: a misspelt option is a 400 naming it, never silently ignored (an export would ignore the container)."""
    response = getattr(api_as(user), method)(path.format(campaign=campaign.pk), body, format="json")

    assert response.status_code == 400, response.json()
    messages = response.json()["fields"].get(named)
    assert messages and messages[0].startswith("Unknown field; expected"), response.json()
