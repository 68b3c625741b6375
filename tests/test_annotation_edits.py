"""Taking a label back over REST (issue 18): `PATCH /api/v1/annotations/{id}/` by its annotator, in the window.

Every change is a version with its time; the label stays one label, so counts and the retrain counter do not
move, while consensus, gold accuracy and exports follow the latest version.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from annotate import clock
from annotate.models import Annotation, AnnotationVersion, Campaign, Membership, Pair
from annotate.selectors import pseudonym
from annotate.services.quality import LABEL_CHANGES, consensus_refresh
from tests.factories import make_pairs
from tests.test_exports import export, rows_of

User = get_user_model()


def _label(client, campaign: Campaign, choice: str = "b", strength: int | None = 3) -> dict:
    """Lease the next pair and label it; return the saved annotation's body."""
    lease = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    body = {"assignment": lease["assignment"], "more_hallucinated": choice, "strength": strength}
    response = client.post("/api/v1/annotations/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _edit(client, annotation_id: int, **changes):
    return client.patch(f"/api/v1/annotations/{annotation_id}/", changes, format="json")


@pytest.fixture
def labeled(campaign, api_as):
    """One pair that ann1 labeled `b`, strength 3."""
    make_pairs(campaign, 2)
    return _label(api_as("ann1"), campaign)


@pytest.mark.django_db
def test_an_edit_within_the_window_is_a_new_version_and_the_label_stays_one(campaign, labeled, api_as):
    client = api_as("ann1")
    response = _edit(client, labeled["id"], more_hallucinated="a", strength=2, rationale="B names the cup right.")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["more_hallucinated"], body["strength"], body["version"]) == ("a", 2, 2)
    assert [(v["number"], v["more_hallucinated"], v["strength"]) for v in body["versions"]] == [
        (1, "b", 3),
        (2, "a", 2),
    ]
    first, latest = body["versions"]
    assert first["created_at"] == labeled["created_at"] and first["replaced_at"] == latest["created_at"]
    assert latest["replaced_at"] is None and body["edited_at"] == latest["created_at"]

    # A tie drops the strength the edit did not give; the rationale given before stays.
    tie = _edit(client, labeled["id"], more_hallucinated="both").json()
    assert (tie["more_hallucinated"], tie["strength"], tie["rationale"], tie["version"]) == (
        "both", None, "B names the cup right.", 3,
    )  # fmt: skip

    listed = api_as("res").get(f"/api/v1/campaigns/{campaign.pk}/annotations/").json()["results"]
    assert [(row["id"], row["more_hallucinated"]) for row in listed] == [(labeled["id"], "both")]
    assert api_as("lead").get(f"/api/v1/annotations/{labeled['id']}/").json()["versions"] == tie["versions"]
    campaign.refresh_from_db()
    pair = Pair.objects.get(pk=labeled["pair"])
    assert (campaign.human_labels, campaign.labels_at_last_request, pair.labels_count) == (1, 0, 1)
    assert campaign.label_edits == 2 and Annotation.objects.count() == 1


@pytest.mark.django_db
def test_after_the_window_an_edit_is_refused_and_changes_nothing(campaign, labeled, api_as, monkeypatch):
    later = clock.now() + timedelta(minutes=campaign.edit_window_minutes, seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    response = _edit(api_as("ann1"), labeled["id"], more_hallucinated="a", strength=1)
    assert response.status_code == 409
    assert "changed for 30 minutes" in response.json()["detail"], response.json()
    annotation = Annotation.objects.get(pk=labeled["id"])
    assert (annotation.more_hallucinated, annotation.version, AnnotationVersion.objects.count()) == ("b", 1, 0)

    monkeypatch.undo()
    assert api_as("lead").patch(f"/api/v1/campaigns/{campaign.pk}/", {"edit_window_minutes": 0}).status_code == 200
    closed = _edit(api_as("ann1"), labeled["id"], more_hallucinated="a", strength=1)
    assert closed.status_code == 409 and "edit window is 0 minutes" in closed.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("username", "status", "read"),
    [("ann2", 404, 404), ("lead", 403, 200), ("res", 403, 200), ("otherlead", 404, 404)],
)
def test_only_its_annotator_may_change_a_label(campaign, labeled, api_as, username, status, read):
    """Another annotator may not know the label exists; a lead reads it but settles pairs, never edits them."""
    response = _edit(api_as(username), labeled["id"], more_hallucinated="a", strength=1)
    assert response.status_code == status, response.json()
    assert api_as(username).get(f"/api/v1/annotations/{labeled['id']}/").status_code == read
    assert Annotation.objects.get(pk=labeled["id"]).version == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"strength": 9}, "strength"),
        ({"more_hallucinated": "neither", "strength": 2}, "strength"),
        ({"spans": [{"response": "a", "start": 3, "end": 999}]}, "spans"),
        ({"hallucination_types": ["vibes"]}, "hallucination_types"),
        ({"duration_ms": 5}, "duration_ms"),
        ({}, None),
    ],
)
def test_a_bad_edit_names_the_field_and_keeps_the_label(campaign, labeled, api_as, changes, field):
    response = _edit(api_as("ann1"), labeled["id"], **changes)
    assert response.status_code == 400, response.json()
    assert field is None or field in response.json()["fields"], response.json()
    assert Annotation.objects.get(pk=labeled["id"]).version == 1 and not AnnotationVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_are_serialized_and_every_version_is_kept(campaign, labeled, api_as):
    edits = [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("both", None), ("neither", None)]
    codes: list[int] = []

    def edit(choice: str, strength: int | None) -> None:
        codes.append(_edit(api_as("ann1"), labeled["id"], more_hallucinated=choice, strength=strength).status_code)
        connection.close()

    threads = [threading.Thread(target=edit, args=change) for change in edits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes == [200] * len(edits)
    annotation = Annotation.objects.get(pk=labeled["id"])
    versions = list(AnnotationVersion.objects.filter(annotation=annotation).order_by("number"))
    assert [v.number for v in versions] == list(range(1, len(edits) + 1)) and annotation.version == len(edits) + 1
    # Each edit replaced the one before it: the kept versions are the first label and all edits but the last.
    given = [(v.more_hallucinated, v.strength) for v in versions] + [
        (annotation.more_hallucinated, annotation.strength)
    ]
    assert given[0] == ("b", 3) and sorted(given[1:], key=str) == sorted(edits, key=str)
    assert [v.replaced_at for v in versions[:-1]] == [v.created_at for v in versions[1:]]
    campaign.refresh_from_db()
    assert (campaign.human_labels, campaign.label_edits, Pair.objects.get(pk=labeled["pair"]).labels_count) == (
        1, len(edits), 1,
    )  # fmt: skip


@pytest.mark.django_db
def test_an_edit_of_a_gold_answer_is_judged_again(campaign, api_as, django_capture_on_commit_callbacks):
    Campaign.objects.filter(pk=campaign.pk).update(gold_share=1.0, min_gold_accuracy=0.7, gold_min_answered=1)
    make_pairs(campaign, 2, gold=2)  # gold says b
    client = api_as("ann1")
    with django_capture_on_commit_callbacks(execute=True):
        given = _label(client, campaign, "b", 2)

    assert _gold_of(api_as, campaign, "ann1") == {"answered": 1, "correct": 1, "accuracy": 1.0}
    with django_capture_on_commit_callbacks(execute=True):
        assert _edit(client, given["id"], more_hallucinated="a").status_code == 200
    assert _gold_of(api_as, campaign, "ann1") == {"answered": 1, "correct": 0, "accuracy": 0.0}
    paused = Membership.objects.get(campaign=campaign, user__username="ann1")
    assert paused.paused_reason.startswith("gold accuracy 0% (0 of 1)"), "the edit is judged as the answer was"


@pytest.mark.django_db
def test_a_gold_answer_whose_answer_the_campaign_shows_is_final(campaign, api_as):
    """With gold feedback on, My work shows a gold pair's answer once answered; an edit would copy it."""
    Campaign.objects.filter(pk=campaign.pk).update(gold_share=1.0, gold_feedback=True)
    make_pairs(campaign, 2, gold=2)
    client = api_as("ann1")
    given = _label(client, campaign, "a", 2)

    response = _edit(client, given["id"], more_hallucinated="b")

    assert response.status_code == 409 and "gold pair" in response.json()["detail"], response.json()
    assert Annotation.objects.get(pk=given["id"]).more_hallucinated == "a"


def _gold_of(api_as, campaign: Campaign, username: str) -> dict:
    name = pseudonym(user_id=User.objects.get(username=username).pk, campaign_id=campaign.pk)
    rows = api_as("lead").get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()["annotators"]
    return next(row["gold"] for row in rows if row["annotator"] == name)


@pytest.mark.django_db
def test_an_edit_that_turns_the_consensus_is_what_the_next_export_says(campaign, api_as):
    (pair,) = make_pairs(campaign, 1, texts=("Two red balls.", "Three red balls."))
    given = {username: _label(api_as(username), campaign, "b", 3) for username in ("ann1", "ann2")}
    consensus_refresh(campaign=campaign)
    before = export(campaign, "reward")
    assert Pair.objects.get(pk=pair.pk).consensus["more_hallucinated"] == "b"

    for username, annotation in given.items():
        assert _edit(api_as(username), annotation["id"], more_hallucinated="a", strength=4).status_code == 200
    assert Campaign.objects.filter(pk=campaign.pk, consensus_labels__lt=LABEL_CHANGES).exists(), (
        "the stored consensus is stale after an edit, so a worker's beat refreshes it"
    )
    consensus_refresh(campaign=campaign)
    assert Pair.objects.get(pk=pair.pk).consensus["more_hallucinated"] == "a"
    after = export(campaign, "reward")

    def chosen(snapshot) -> list[dict]:
        (row,) = rows_of(snapshot)
        return row["chosen"]

    assert chosen(before) == [{"role": "assistant", "content": "Two red balls."}]
    assert chosen(after) == [{"role": "assistant", "content": "Three red balls."}]
    assert [row["more_hallucinated"] for row in rows_of(export(campaign, "annotations"))] == ["a", "a"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "spans", "refusal"),
    [
        ("off", [{"response": "a", "start": 0, "end": 3}], "does not collect spans"),
        ("required", [{"response": "b", "start": 0, "end": 3}], "at least one span in the more hallucinated"),
        ("optional", [{"response": "a", "start": 0, "end": 10_000}], "expected 0 <= start < end"),
    ],
)
def test_an_edit_is_held_to_the_same_spans_rule_as_a_submit(campaign, labeled, api_as, mode, spans, refusal):
    """The submit checks spans in SQL (`rewardlab_spans_errors`); an edit calls that same function."""
    Campaign.objects.filter(pk=campaign.pk).update(spans=mode)

    response = _edit(api_as("ann1"), labeled["id"], more_hallucinated="a", strength=2, spans=spans)

    assert response.status_code == 400 and refusal in " ".join(response.json()["fields"]["spans"]), response.json()
    assert Annotation.objects.get(pk=labeled["id"]).more_hallucinated == "b", "nothing changed"
