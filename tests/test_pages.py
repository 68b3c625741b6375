"""The server-rendered pages: who sees what, the labeling flow with and without htmx, imports, images."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_htmx.http import HTMX_STOP_POLLING
from rest_framework.authtoken.models import Token

from annotate.models import Annotation, Assignment, ImportJob
from annotate.services.campaigns import campaign_update
from annotate.views import image_url
from annotate.views.label import canonical_choice
from tests import factories

HTMX = {"HX-Request": "true"}
ROLES_OF_DEMO = ["ann1", "lead", "res", "otherlead"]


@pytest.fixture
def make_pairs():
    return factories.make_pairs


@pytest.fixture
def as_user(client):
    def login(username: str):
        client.force_login(get_user_model().objects.get(username=username))
        return client

    return login


def leased(username: str, *, left: str) -> Assignment:
    """Return the user's open lease, with the side shown on the left fixed (it is random otherwise)."""
    assignment = Assignment.objects.get(annotator__username=username, status=Assignment.Status.LEASED)
    Assignment.objects.filter(pk=assignment.pk).update(left=left)
    assignment.refresh_from_db()
    return assignment


# Who may open which page --------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["campaign-list", "label-page", "import-page"])
def test_anonymous_is_sent_to_login(client, campaign, url_name):
    url = reverse(url_name) if url_name == "campaign-list" else reverse(url_name, args=[campaign.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_anonymous_htmx_request_redirects_the_whole_tab(client, campaign):
    url = reverse("label-page", args=[campaign.pk])
    response = client.get(url, headers={**HTMX, "HX-Current-URL": f"http://testserver{url}"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('login')}?next=%2Fcampaigns%2F{campaign.pk}%2Flabel%2F"


@pytest.mark.parametrize(("username", "status"), [("ann1", 200), ("lead", 403), ("res", 403), ("otherlead", 404)])
def test_label_page_is_for_annotators_only(as_user, campaign, make_pairs, username, status):
    make_pairs(campaign, 1)
    response = as_user(username).get(reverse("label-page", args=[campaign.pk]))
    assert response.status_code == status
    if status != 200:
        assert not Assignment.objects.exists()


@pytest.mark.parametrize(("username", "status"), [("lead", 200), ("ann1", 403), ("res", 403), ("otherlead", 404)])
def test_import_page_is_for_leads_only(as_user, campaign, username, status):
    response = as_user(username).get(reverse("import-page", args=[campaign.pk]))
    assert response.status_code == status


@pytest.mark.parametrize(("username", "status"), [("lead", 200), ("ann1", 403), ("res", 403), ("otherlead", 404)])
def test_import_status_is_for_the_campaigns_leads_only(as_user, campaign, username, status):
    job = ImportJob.objects.create(campaign=campaign, filename="items.jsonl")
    response = as_user(username).get(reverse("import-status", args=[job.pk]), headers=HTMX)
    assert response.status_code == status


def test_error_partial_goes_to_the_flash_region_for_htmx(as_user, campaign):
    response = as_user("res").get(reverse("label-page", args=[campaign.pk]), headers=HTMX)
    assert response.status_code == 403
    assert response["HX-Retarget"] == "#flash"
    assert response["HX-Reswap"] == "innerHTML"
    assert b"<html" not in response.content
    assert b"you are researcher" in response.content


def test_error_page_for_plain_requests(as_user, campaign):
    response = as_user("otherlead").get(reverse("label-page", args=[campaign.pk]))
    assert response.status_code == 404
    assert b"<html" in response.content
    assert f"No campaign {campaign.pk}.".encode() in response.content


# Campaign list ------------------------------------------------------------------------------------


def test_campaign_list_shows_each_role_what_it_can_do(as_user, campaign, make_pairs):
    make_pairs(campaign, 2)
    client = as_user("ann1")
    client.post(
        reverse("label-submit", args=[campaign.pk]),
        {"assignment": _lease(client, campaign).pk, "more_hallucinated": "both"},
    )

    page = client.get(reverse("campaign-list")).content.decode()
    assert "Demo" in page and "Annotator" in page
    assert reverse("label-page", args=[campaign.pk]) in page
    assert '<dd class="done-count">1</dd>' in page
    assert "Import data" not in page

    page = as_user("lead").get(reverse("campaign-list")).content.decode()
    assert "Import data" in page and reverse("import-page", args=[campaign.pk]) in page
    assert reverse("label-page", args=[campaign.pk]) not in page

    page = as_user("res").get(reverse("campaign-list")).content.decode()
    assert "Researcher" in page
    assert "Import data" not in page and reverse("label-page", args=[campaign.pk]) not in page

    page = as_user("otherlead").get(reverse("campaign-list")).content.decode()
    assert "Other" in page and "Demo" not in page


def _lease(client, campaign) -> Assignment:
    client.get(reverse("label-page", args=[campaign.pk]))
    return Assignment.objects.filter(status=Assignment.Status.LEASED).latest("pk")


# The labeling page --------------------------------------------------------------------------------


def test_label_page_shows_answers_by_the_assignments_left_side(as_user, campaign, make_pairs):
    make_pairs(campaign, 1, texts=("Answer A text.", "Answer B text."))
    client = as_user("ann1")
    client.get(reverse("label-page", args=[campaign.pk]))
    leased("ann1", left="b")
    page = client.get(reverse("label-page", args=[campaign.pk])).content.decode()
    shown = re.sub(r"<[^>]*>", "", page)  # the answers' words are elements of their own (spans are marked on them)
    assert shown.index("Answer B text.") < shown.index("Answer A text.")
    assert "llava" not in page, "model names would bias the annotator"
    for key in ("1", "2", "3", "4", "Q", "W", "E", "R", "Z", "S", "Enter"):
        assert f"<kbd>{key}</kbd>" in page
    assert "negligible" in page and "significant" in page
    assert '<strong class="counter__n">0</strong> labeled in this campaign' in page


def test_facts_are_shown_only_when_the_campaign_says_so(as_user, campaign, make_pairs):
    make_pairs(campaign, 1, facts={"caption": "Two red balls and a blue box.", "answer": "two"})
    client = as_user("ann1")
    assert "Two red balls and a blue box." not in client.get(reverse("label-page", args=[campaign.pk])).content.decode()
    campaign_update(campaign=campaign, show_facts=True)
    assert "Two red balls and a blue box." in client.get(reverse("label-page", args=[campaign.pk])).content.decode()


def test_user_text_is_escaped(as_user, campaign, make_pairs):
    campaign_update(campaign=campaign, instructions="Look <b>closely</b>.\nThen decide.")
    make_pairs(campaign, 1, prompt="<script>alert(1)</script>", texts=("<img src=x onerror=alert(2)>", "fine"))
    page = as_user("ann1").get(reverse("label-page", args=[campaign.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    words = re.sub(r'<span class="w"[^>]*>|</span>', "", page)  # the answers' words, joined back
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in words
    # Instructions are Markdown: raw HTML outside the allow-list is dropped, its text kept (annotate/markdown.py).
    assert "<b>closely</b>" not in page and "<p>Look closely.<br>\nThen decide.</p>" in page


def test_plain_post_saves_the_canonical_choice_and_redirects(as_user, campaign, make_pairs):
    make_pairs(campaign, 2)
    client = as_user("ann1")
    client.get(reverse("label-page", args=[campaign.pk]))
    assignment = leased("ann1", left="b")

    response = client.post(
        reverse("label-submit", args=[campaign.pk]),
        {
            "assignment": assignment.pk,
            "more_hallucinated": "left",
            "strength": "3",
            "duration_ms": "4200",
            "hallucination_types": ["count", "object"],
            "rationale": "Left counts three balls.",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("label-page", args=[campaign.pk])
    annotation = Annotation.objects.get()
    # The left side showed response b, so "left is more hallucinated" is b.
    assert annotation.more_hallucinated == "b"
    assert annotation.strength == 3
    assert annotation.shown_left == "b"
    assert annotation.duration_ms == 4200
    assert sorted(annotation.hallucination_types) == ["count", "object"]
    assert annotation.rationale == "Left counts three balls."


def test_htmx_post_saves_and_swaps_in_the_next_pair(as_user, campaign, make_pairs):
    make_pairs(campaign, 2)
    client = as_user("ann1")
    client.get(reverse("label-page", args=[campaign.pk]))
    assignment = leased("ann1", left="b")

    response = client.post(
        reverse("label-submit", args=[campaign.pk]),
        {"assignment": assignment.pk, "more_hallucinated": "right", "strength": "2"},
        headers=HTMX,
    )

    assert response.status_code == 200
    annotation = Annotation.objects.get()
    assert (annotation.more_hallucinated, annotation.strength) == ("a", 2)
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="label-panel"')
    assert "<html" not in page
    next_assignment = Assignment.objects.get(status=Assignment.Status.LEASED)
    assert next_assignment.pk != assignment.pk
    assert f'name="assignment" value="{next_assignment.pk}"' in page
    assert '<strong class="counter__n">1</strong> labeled in this campaign' in page


@pytest.mark.parametrize(
    ("shown", "left", "canonical"),
    [
        ("left", "a", "a"),
        ("left", "b", "b"),
        ("right", "a", "b"),
        ("right", "b", "a"),
        ("both", "b", "both"),
        ("neither", "a", "neither"),
    ],
)
def test_canonical_choice(shown, left, canonical):
    assert canonical_choice(shown, left=left) == canonical


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_double_submit_saves_one_annotation(as_user, campaign, make_pairs, headers):
    make_pairs(campaign, 3)
    client = as_user("ann1")
    assignment = _lease(client, campaign)
    data = {"assignment": assignment.pk, "more_hallucinated": "left", "strength": "4"}

    first = client.post(reverse("label-submit", args=[campaign.pk]), data, headers=headers)
    second = client.post(reverse("label-submit", args=[campaign.pk]), data, headers=headers)

    assert first.status_code == second.status_code
    assert Annotation.objects.count() == 1
    if headers:
        # Both answers show the same next pair: the repeat neither saved nor leased anything new.
        following = Assignment.objects.get(status=Assignment.Status.LEASED)
        for response in (first, second):
            assert f'name="assignment" value="{following.pk}"' in response.content.decode()


def test_refused_label_keeps_what_was_typed(as_user, campaign, make_pairs):
    make_pairs(campaign, 1)
    client = as_user("ann1")
    assignment = _lease(client, campaign)

    response = client.post(
        reverse("label-submit", args=[campaign.pk]),
        {
            "assignment": assignment.pk,
            "more_hallucinated": "right",
            "hallucination_types": ["count"],
            "rationale": "The <right> one miscounts",
        },
        headers=HTMX,
    )

    assert response.status_code == 422
    assert not Annotation.objects.exists()
    page = response.content.decode()
    assert "Pick how much better the other answer is" in page
    assert 'value="right" data-key="2" checked' in page
    assert 'value="count" data-key="c" checked' in page
    assert "The &lt;right&gt; one miscounts</textarea>" in page
    assert f'name="assignment" value="{assignment.pk}"' in page


def test_refused_label_without_htmx_renders_the_page(as_user, campaign, make_pairs):
    make_pairs(campaign, 1)
    campaign_update(campaign=campaign, rationale_required=True)
    client = as_user("ann1")
    assignment = _lease(client, campaign)

    response = client.post(
        reverse("label-submit", args=[campaign.pk]), {"assignment": assignment.pk, "more_hallucinated": "neither"}
    )

    assert response.status_code == 422
    assert b"<html" in response.content
    assert b"This campaign asks for a rationale with every label." in response.content
    assert not Annotation.objects.exists()


def test_strength_is_dropped_for_both_and_neither(as_user, campaign, make_pairs):
    make_pairs(campaign, 1)
    client = as_user("ann1")
    assignment = _lease(client, campaign)
    client.post(
        reverse("label-submit", args=[campaign.pk]),
        {"assignment": assignment.pk, "more_hallucinated": "both", "strength": "2"},
    )
    annotation = Annotation.objects.get()
    assert (annotation.more_hallucinated, annotation.strength) == ("both", None)


def test_skip_gives_the_pair_back(as_user, campaign, make_pairs):
    make_pairs(campaign, 2)
    client = as_user("ann1")
    assignment = _lease(client, campaign)

    response = client.post(reverse("label-skip", args=[campaign.pk]), {"assignment": assignment.pk})

    assert response.status_code == 302
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SKIPPED
    response = client.post(
        reverse("label-skip", args=[campaign.pk]), {"assignment": assignment.pk + 1000}, headers=HTMX
    )
    assert response.status_code == 404
    assert response["HX-Retarget"] == "#flash"


def test_cannot_label_another_annotators_assignment(as_user, campaign, make_pairs):
    make_pairs(campaign, 1)
    theirs = _lease(as_user("ann2"), campaign)
    response = as_user("ann1").post(
        reverse("label-submit", args=[campaign.pk]),
        {"assignment": theirs.pk, "more_hallucinated": "left", "strength": "1"},
    )
    assert response.status_code == 404
    assert not Annotation.objects.exists()


def test_all_done_when_nothing_is_left(as_user, campaign, make_pairs):
    make_pairs(campaign, 1)
    client = as_user("ann1")
    assignment = _lease(client, campaign)
    response = client.post(
        reverse("label-submit", args=[campaign.pk]),
        {"assignment": assignment.pk, "more_hallucinated": "neither"},
        headers=HTMX,
    )
    page = response.content.decode()
    assert "All done" in page
    assert '<strong class="counter__n">1</strong> labeled in this campaign' in page
    assert "<form" not in page


# Images -------------------------------------------------------------------------------------------


def test_image_is_served_to_members_only(client, as_user, campaign, make_pairs, api_as):
    pair = make_pairs(campaign, 1)[0]
    image = pair.item.image
    url = image_url(image)
    assert url == f"/images/{image.sha256}/"

    response = as_user("ann1").get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert b"".join(response.streaming_content) == default_storage.open(image.file.name).read()

    assert as_user("otherlead").get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 404


def test_image_url_accepts_an_api_token(client, campaign, make_pairs):
    image = make_pairs(campaign, 1)[0].item.image
    token = Token.objects.create(user=get_user_model().objects.get(username="res"))
    assert client.get(image_url(image), headers={"Authorization": f"Token {token.key}"}).status_code == 200
    assert client.get(image_url(image), headers={"Authorization": "Token nope"}).status_code == 404


# Imports ------------------------------------------------------------------------------------------

JSONL = b'{"external_id": "x1", "image": "data:image/png;base64,AAAA", "prompt": "p", "responses": []}\n'


def test_upload_without_htmx_creates_a_job_and_redirects_to_it(as_user, campaign):
    response = as_user("lead").post(
        reverse("import-page", args=[campaign.pk]), {"file": SimpleUploadedFile("items.jsonl", JSONL)}
    )
    job = ImportJob.objects.get()
    assert (job.campaign, job.filename, job.created_by.username) == (campaign, "items.jsonl", "lead")
    assert response.status_code == 302
    assert response["Location"] == reverse("import-status", args=[job.pk])
    page = as_user("lead").get(response["Location"]).content.decode()
    assert "items.jsonl" in page and 'hx-trigger="load delay:1s"' in page


def test_upload_with_htmx_returns_a_polling_fragment(as_user, campaign):
    response = as_user("lead").post(
        reverse("import-page", args=[campaign.pk]),
        {"file": SimpleUploadedFile("items.jsonl", JSONL)},
        headers=HTMX,
    )
    job = ImportJob.objects.get()
    assert response.status_code == 202
    page = response.content.decode()
    assert f'id="import-job-{job.pk}"' in page
    assert f'hx-get="{reverse("import-status", args=[job.pk])}"' in page
    assert 'hx-trigger="load delay:1s"' in page and 'hx-swap="outerHTML"' in page
    assert 'id="upload-form"' in page and 'hx-swap-oob="true"' in page


def test_refused_upload_shows_the_reason_on_the_form(as_user, campaign):
    response = as_user("lead").post(
        reverse("import-page", args=[campaign.pk]),
        {"file": SimpleUploadedFile("notes.txt", b"hello")},
        headers=HTMX,
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#upload-form"
    assert "Expected a" in response.content.decode() and "notes.txt" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_status_fragment_polls_until_the_job_is_terminal(as_user, campaign):
    job = ImportJob.objects.create(campaign=campaign, filename="items.zip", status="running", progress=0.4)
    client = as_user("lead")
    url = reverse("import-status", args=[job.pk])

    running = client.get(url, headers=HTMX)
    assert running.status_code == 200
    assert 'hx-trigger="load delay:1s"' in running.content.decode()
    assert 'value="0.400"' in running.content.decode()

    ImportJob.objects.filter(pk=job.pk).update(status="succeeded", progress=1.0, items_created=12, pairs_created=30)
    done = client.get(url, headers=HTMX)
    assert done.status_code == HTMX_STOP_POLLING
    page = done.content.decode()
    assert "hx-trigger" not in page
    assert "<strong>12</strong> items and <strong>30</strong> pairs created" in page


def test_failed_job_lists_every_error_line(as_user, campaign):
    errors = [{"line": 3, "reason": "missing 'prompt'"}, {"line": 7, "reason": "image <b>x.png</b> not found"}]
    job = ImportJob.objects.create(campaign=campaign, filename="items.zip", status="failed", errors=errors)
    response = as_user("lead").get(reverse("import-status", args=[job.pk]), headers=HTMX)
    page = response.content.decode()
    assert response.status_code == HTMX_STOP_POLLING
    assert "line 3: missing &#x27;prompt&#x27;" in page
    assert "line 7: image &lt;b&gt;x.png&lt;/b&gt; not found" in page


def test_import_page_lists_recent_jobs(as_user, campaign):
    ImportJob.objects.create(campaign=campaign, filename="first.zip", status="succeeded", progress=1.0)
    page = as_user("lead").get(reverse("import-page", args=[campaign.pk])).content.decode()
    assert "first.zip" in page and 'accept=".zip,.jsonl,.json,.parquet"' in page


# Signing in and out -------------------------------------------------------------------------------


def test_login_form_signs_in_and_goes_to_the_campaigns(client, campaign):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "ann1", "password": "pw-ann1"})
    assert response.status_code == 302 and response["Location"] == reverse("campaign-list")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("campaign-list")).status_code == 302


def test_login_form_refuses_a_wrong_password(client, campaign):
    response = client.post(reverse("login"), {"username": "ann1", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_label_on_a_skipped_pair_moves_on_with_a_notice(as_user, campaign, make_pairs):
    make_pairs(campaign, 2)
    client = as_user("ann1")
    assignment = _lease(client, campaign)
    client.post(reverse("label-skip", args=[campaign.pk]), {"assignment": assignment.pk})
    data = {"assignment": assignment.pk, "more_hallucinated": "neither"}

    response = client.post(reverse("label-submit", args=[campaign.pk]), data, headers=HTMX)
    assert response.status_code == 200
    assert f"Assignment {assignment.pk} was skipped" in response.content.decode()
    assert 'name="assignment" value="' in response.content.decode()

    response = client.post(reverse("label-submit", args=[campaign.pk]), data, follow=True)
    assert f"Assignment {assignment.pk} was skipped" in response.content.decode()
    assert not Annotation.objects.exists()


def test_a_duration_longer_than_a_working_session_is_recorded_as_unknown(as_user, campaign, make_pairs):
    make_pairs(campaign, 2)
    client = as_user("ann1")
    client.get(reverse("label-page", args=[campaign.pk]))
    assignment = leased("ann1", left="a")
    eight_hours_ms = str(8 * 60 * 60 * 1000)
    body = {"assignment": assignment.pk, "more_hallucinated": "neither", "duration_ms": eight_hours_ms}
    client.post(reverse("label-submit", args=[campaign.pk]), body)
    assert Annotation.objects.get().duration_ms is None
