"""Hallucinated spans (issue 18): the campaign's setting, the API and the page that save them, the exports,
the pair API and the surfaced pairs that show them, and user text escaped wherever a span is drawn."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotate import clock
from annotate.exceptions import ApplicationError
from annotate.models import Annotation, Assignment, Campaign, Pair
from annotate.selectors import pseudonym
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.campaigns import campaign_update
from annotate.services.exports import export_snapshot_create, export_snapshot_run
from annotate.spans import marked, pieces
from tests.factories import make_pairs

pytestmark = pytest.mark.django_db

HOSTILE = "Two <script>alert(1)</script> balls & a box."  # "<script>" starts at 4
TEXTS = ("There are two red balls.", "There are three red balls and a dog.")  # b: "three" 10..15, "a dog" 30..35


def lease(pair: Pair, username: str, *, left: str = "b") -> Assignment:
    now = clock.now()
    annotator = get_user_model().objects.get(username=username)
    return Assignment.objects.create(
        pair=pair, annotator=annotator, left=left, leased_at=now, expires_at=now + timedelta(hours=1)
    )


def save(pair: Pair, username: str, choice: str, *spans: dict, strength: int | None = 3) -> Annotation:
    assignment = lease(pair, username)
    label = LabelInput(choice, strength if choice in "ab" else None, spans=spans)
    saved = annotation_save(assignment_id=assignment.pk, user_id=assignment.annotator_id, label=label)
    return Annotation.objects.get(pk=saved.annotation_id)


def submit(api_as, assignment: Assignment, choice: str = "b", **label):
    body = {"assignment": assignment.pk, "more_hallucinated": choice, "strength": 3 if choice in "ab" else None}
    client = api_as(assignment.annotator.username)
    return client.post("/api/v1/annotations/", {**body, **label}, format="json")


def span(side: str, start: int, end: int, **extra) -> dict:
    return {"response": side, "start": start, "end": end, **extra}


# --- the text helpers -----------------------------------------------------------------------------------


def test_words_cover_the_text_and_carry_their_own_offsets():
    text = "Dogs: 3 ☕ isn't\nred."
    cut = pieces(text)
    assert "".join(piece.text for piece in cut) == text
    assert all(text[piece.start : piece.end] == piece.text for piece in cut)
    assert [piece.text for piece in cut if piece.is_word] == ["Dogs", ":", "3", "☕", "isn't", "red", "."]


def test_marked_pieces_cut_at_every_boundary_and_merge_overlaps():
    cut = marked(TEXTS[1], [span("b", 10, 15, type="count"), span("b", 10, 21), span("b", 999, 1000)])
    assert [(m.text, m.marked, m.types) for m in cut] == [
        ("There are ", False, ()),
        ("three", True, ("", "count")),
        (" red b", True, ("",)),
        ("alls and a dog.", False, ()),
    ]


# --- the setting, saving spans ---------------------------------------------------------------------------


def test_the_setting_is_read_and_changed_over_the_api(campaign, api_as):
    client = api_as("lead")
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/").json()["spans"] == "optional"
    response = client.patch(f"/api/v1/campaigns/{campaign.pk}/", {"spans": "required"}, format="json")
    assert response.status_code == 200 and response.json()["spans"] == "required"
    response = client.patch(f"/api/v1/campaigns/{campaign.pk}/", {"spans": "always"}, format="json")
    assert response.status_code == 400 and "spans" in response.json()["fields"]
    assert Campaign.objects.get(pk=campaign.pk).spans == "required"


def test_optional_spans_are_saved_in_canonical_offsets_with_their_type(campaign, api_as):
    pair, other = make_pairs(campaign, 2, texts=TEXTS)
    assignment = lease(pair, "ann1", left="b")
    response = submit(api_as, assignment, spans=[span("b", 10, 15, type="count"), span("b", 30, 35)])
    assert response.status_code == 201, response.json()
    assert response.json()["spans"] == [span("b", 10, 15, type="count"), span("b", 30, 35)]
    assert submit(api_as, lease(other, "ann2"), spans=[]).status_code == 201


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (span("b", 10, 15, type="colour"), "colour"),
        (span("b", 10, 15, note="x"), "note"),
        (span("c", 10, 15), "response"),
    ],
)
def test_a_malformed_span_is_refused_by_name(campaign, api_as, bad, says):
    pair = make_pairs(campaign, 1, texts=TEXTS)[0]
    response = submit(api_as, lease(pair, "ann1"), spans=[bad])
    assert response.status_code == 400 and says in json.dumps(response.json())
    assert not Annotation.objects.exists()


def test_a_span_past_its_answer_is_refused_with_the_answer_length(campaign, api_as):
    pair = make_pairs(campaign, 1, texts=TEXTS)[0]
    response = submit(api_as, lease(pair, "ann1"), spans=[span("a", 10, 15), span("a", 20, 30)])
    assert response.status_code == 400
    assert response.json()["fields"]["spans"] == ["Span 1: expected 0 <= start < end <= 24, got start=20, end=30."]


def test_off_refuses_spans_and_saves_nothing(campaign, api_as):
    campaign_update(campaign=campaign, spans="off")
    pair = make_pairs(campaign, 1, texts=TEXTS)[0]
    assignment = lease(pair, "ann1")
    response = submit(api_as, assignment, spans=[span("b", 10, 15)])
    assert response.status_code == 400
    assert response.json()["fields"]["spans"] == ["This campaign does not collect spans (spans: off); got 1."]
    assert not Annotation.objects.exists()
    assert submit(api_as, assignment).status_code == 201, "a label without spans is fine"


def test_required_asks_for_a_span_in_the_answer_named_more_hallucinated(campaign, api_as):
    campaign_update(campaign=campaign, spans="required")
    first, second, third = make_pairs(campaign, 3, texts=TEXTS)
    assignment = lease(first, "ann1")
    response = submit(api_as, assignment, "b", spans=[span("a", 0, 5)])
    assert response.status_code == 400
    assert response.json()["fields"]["spans"] == [
        "This campaign asks for at least one span in the more hallucinated answer (b); none was marked there."
    ]
    assert submit(api_as, assignment, "b", spans=[span("a", 0, 5), span("b", 10, 15)]).status_code == 201
    assert submit(api_as, lease(second, "ann1"), "neither").status_code == 201, "no side named, no span asked for"
    with pytest.raises(ApplicationError) as refused:
        save(third, "ann2", "a")
    assert "(a)" in refused.value.extra["fields"]["spans"]


def test_a_resubmission_returns_the_first_label_whatever_the_setting_says_now(campaign, api_as):
    pair = make_pairs(campaign, 1, texts=TEXTS)[0]
    assignment = lease(pair, "ann1")
    assert submit(api_as, assignment).status_code == 201
    campaign_update(campaign=campaign, spans="required")
    assert submit(api_as, assignment).status_code == 200


# --- the labeling page's form -----------------------------------------------------------------------------


@pytest.fixture
def ann1_page(campaign):
    client = Client()
    client.login(username="ann1", password="pw-ann1")
    return client


def test_the_page_posts_spans_in_canonical_terms_and_says_what_required_misses(campaign, ann1_page):
    campaign_update(campaign=campaign, spans="required")
    pair = make_pairs(campaign, 1, texts=TEXTS)[0]
    assignment = lease(pair, "ann1", left="b")
    url = reverse("label-submit", args=[campaign.pk])
    form = {"assignment": assignment.pk, "more_hallucinated": "left", "strength": "3"}  # left is b

    refused = ann1_page.post(url, form)
    assert refused.status_code == 422
    assert "Mark at least one span in the answer you picked as more hallucinated" in refused.content.decode()
    malformed = ann1_page.post(url, {**form, "spans": ["b:10"]})
    assert malformed.status_code == 422 and "Span 0: expected side:start:end[:type], got &#x27;b:10&#x27;" in (
        malformed.content.decode()
    )
    kept = ann1_page.post(
        url, {**form, "spans": ["b:10:15:count", "a:0:5"], "rationale": "x"}, headers={"HX-Request": "true"}
    )
    assert kept.status_code == 200
    annotation = Annotation.objects.get()
    assert annotation.more_hallucinated == "b"
    assert annotation.spans == [span("b", 10, 15, type="count"), span("a", 0, 5)]


def test_the_page_renders_words_with_offsets_over_escaped_text(campaign, ann1_page):
    make_pairs(campaign, 1, texts=("Fine.", HOSTILE))
    page = ann1_page.get(reverse("label-page", args=[campaign.pk])).content.decode()
    assert "<script>alert" not in page
    assert (
        '<span class="w" data-start="4" data-end="5">&lt;</span><span class="w" data-start="5" data-end="11">' in page
    )
    assert 'data-key="m" data-span-mark' in page and 'data-key-close="Enter"' in page


def test_off_leaves_the_span_tool_out(campaign, ann1_page):
    campaign_update(campaign=campaign, spans="off")
    make_pairs(campaign, 1, texts=TEXTS)
    page = ann1_page.get(reverse("label-page", args=[campaign.pk])).content.decode()
    assert "data-span-tool" not in page and 'class="w"' not in page and "There are three red balls" in page


# --- who sees spans ---------------------------------------------------------------------------------------


def test_leads_and_researchers_see_every_labels_spans_annotators_none(campaign, api_as):
    pair, other = make_pairs(campaign, 2, texts=TEXTS)
    first = save(pair, "ann1", "b", span("b", 10, 15, type="count"))
    save(pair, "ann2", "b")
    for username in ("lead", "res"):
        body = api_as(username).get(f"/api/v1/campaigns/{campaign.pk}/pairs/").json()
        listed = body["results"] if isinstance(body, dict) else body
        who = pseudonym(user_id=first.annotator_id, campaign_id=campaign.pk)
        assert listed[0]["spans"] == [span("b", 10, 15, type="count", annotator=who)]
    assert api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/pairs/").status_code == 403
    Pair.objects.exclude(pk=other.pk).update(status="complete")
    lease_body = api_as("ann2").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert "spans" not in json.dumps(lease_body)


def test_surfaced_pairs_highlight_spans_over_escaped_text(campaign):
    pair = make_pairs(campaign, 1, texts=("Fine.", HOSTILE))[0]
    Pair.objects.filter(pk=pair.pk).update(surfaced=["disagreement"], priority=1)
    save(pair, "ann1", "b", span("b", 4, 12, type="text"))  # "<script>"
    client = Client()
    client.login(username="lead", password="pw-lead")
    page = client.get(reverse("surfaced-page", args=[campaign.pk])).content.decode()
    assert "<script>alert" not in page
    assert 'Two <mark class="span-mark" title="text">&lt;script&gt;</mark>alert(1)&lt;/script&gt; balls' in page


# --- exports ----------------------------------------------------------------------------------------------


def export(campaign: Campaign, fmt: str, container: str = "jsonl") -> list[dict]:
    snapshot = export_snapshot_create(
        campaign=campaign, format=fmt, filters={"images": False}, container=container, created_by=campaign.created_by
    )
    snapshot = export_snapshot_run(snapshot_id=snapshot.pk)
    assert snapshot.status == "succeeded", snapshot.error
    if container == "parquet":
        with zipfile.ZipFile(snapshot.file.path) as archive:
            shards = [name for name in archive.namelist() if name.endswith(".parquet")]
            return [row for name in shards for row in pq.read_table(archive.open(name)).to_pylist()]
    return [json.loads(line) for line in snapshot.file.open("rb").read().splitlines()]


@pytest.fixture
def marked_pairs(campaign):
    """Pair 0: b more hallucinated by consensus, both annotators marked "three" (one typed it), one "a dog"
    and one a word of a; pair 1: a more hallucinated, no span."""
    first, second = make_pairs(campaign, 2, texts=TEXTS)
    save(first, "ann1", "b", span("b", 10, 15, type="count"), span("a", 0, 5))
    save(first, "ann2", "b", span("b", 10, 15, type="count"), span("b", 30, 35))
    save(second, "ann1", "a")
    return first, second


EXPECTED_SPANS = [
    {"start": 10, "end": 15, "text": "three", "type": "count", "annotators": 2},
    {"start": 30, "end": 35, "text": "a dog", "type": None, "annotators": 1},
]


@pytest.mark.parametrize("fmt", ["reward", "trl-dpo"])
@pytest.mark.parametrize("container", ["jsonl", "parquet"])
def test_reward_and_dpo_rows_carry_the_rejected_answers_spans_with_their_text(marked_pairs, campaign, fmt, container):
    rows = sorted(export(campaign, fmt, container), key=lambda row: row["external_id"])
    assert [row["spans"] for row in rows] == [EXPECTED_SPANS, []]


def test_annotations_carry_each_labels_spans(marked_pairs, campaign):
    rows = export(campaign, "annotations")
    assert sorted(json.dumps(row["spans"], sort_keys=True) for row in rows) == sorted(
        json.dumps(spans, sort_keys=True)
        for spans in (
            [span("b", 10, 15, type="count"), span("a", 0, 5)],
            [span("b", 10, 15, type="count"), span("b", 30, 35)],
            [],
        )
    )


def test_formats_without_a_place_for_spans_are_unchanged(marked_pairs, campaign):
    assert all("spans" not in row for row in export(campaign, "llamafactory") + export(campaign, "kto"))
