"""A lead's campaign pages: settings (create, edit, validation), Markdown instructions, status, members."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotate.markdown import render_markdown
from annotate.models import Campaign, Membership, ModelRun
from annotate.services.campaigns import campaign_update, membership_pause
from annotate.services.priorities import DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS
from annotate.views.campaign_forms import CampaignForm
from tests import factories

HTMX = {"HX-Request": "true"}


@pytest.fixture
def as_user(client):
    def login(username: str):
        client.force_login(get_user_model().objects.get(username=username))
        return client

    return login


@pytest.fixture
def staff(make_user):
    return make_user("staff", staff=True)


def settings_url(campaign: Campaign) -> str:
    return reverse("campaign-settings", args=[campaign.pk])


def form_data(campaign: Campaign, **changes) -> dict:
    """The settings form as the browser posts it for this campaign, with `changes` typed in."""
    data = {key: value for key, value in CampaignForm.initial_from(campaign).items() if value is not None}
    data = {key: value for key, value in data.items() if value is not False}  # an unticked box is not posted
    return {**data, **changes}


def member(campaign: Campaign, username: str) -> Membership:
    return Membership.objects.get(campaign=campaign, user__username=username)


# Settings -----------------------------------------------------------------------------------------


def test_settings_page_shows_every_setting_with_defaults_as_placeholders(as_user, campaign):
    page = as_user("lead").get(settings_url(campaign)).content.decode()
    for name in ("name", "instructions", "overlap", "strength_scale", "strength_labels", "show_facts", "gold_share"):
        assert f'name="{name}"' in page
    for name in ("min_gold_accuracy", "gold_min_answered", "rationale_required", "lease_seconds", "retrain_every"):
        assert f'name="{name}"' in page
    assert 'name="max_extra_labels"' in page
    for default in {**DEFAULT_WEIGHTS, **DEFAULT_THRESHOLDS}.values():
        assert f'placeholder="{default:g}"' in page
    assert 'name="weight_entropy"' in page and 'name="threshold_max_share"' in page
    assert "How unsure the active model is" in page  # a help text per weight
    assert 'value="negligible, slight, clear, significant"' in page
    assert 'id="campaign-status"' in page and "Pause labeling" in page


def test_plain_post_saves_and_redirects_with_a_message(as_user, campaign):
    client = as_user("lead")
    data = form_data(campaign, name="Renamed", overlap="4", show_facts="on", gold_share="0.2", lease_seconds="600")
    response = client.post(settings_url(campaign), data)
    assert response.status_code == 302 and response["Location"] == settings_url(campaign)
    campaign.refresh_from_db()
    assert (campaign.name, campaign.overlap, campaign.show_facts, campaign.gold_share) == ("Renamed", 4, True, 0.2)
    assert campaign.lease_seconds == 600
    assert "Settings saved." in client.get(response["Location"]).content.decode()


def test_htmx_post_swaps_the_form_with_a_saved_message(as_user, campaign):
    response = as_user("lead").post(settings_url(campaign), form_data(campaign, retrain_every="50"), headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<form id="settings-form"') and "<html" not in page
    assert "Settings saved." in page and 'name="retrain_every" value="50"' in page
    campaign.refresh_from_db()
    assert campaign.retrain_every == 50


def test_service_errors_show_on_their_fields_and_nothing_is_saved(as_user, campaign):
    data = form_data(campaign, name="Not saved", gold_share="1.5", lease_seconds="5", overlap="0")
    response = as_user("lead").post(settings_url(campaign), data, headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 422
    assert "The settings were not saved" in page
    assert "Expected a share between 0 and 1, got 1.5." in page
    assert "Expected a lease of at least 30 seconds, got 5." in page
    assert "Expected at least one label per pair, got 0." in page
    assert page.count("field--invalid") == 3
    assert 'value="Not saved"' in page, "what the lead typed stays in the form"
    campaign.refresh_from_db()
    assert (campaign.name, campaign.gold_share, campaign.overlap) == ("Demo", 0.0, 2)


def test_a_value_that_is_not_a_number_is_refused_by_the_form(as_user, campaign):
    response = as_user("lead").post(settings_url(campaign), form_data(campaign, overlap="three"))
    assert response.status_code == 422
    assert "Enter a whole number." in response.content.decode()
    assert "<html" in response.content.decode(), "without JS the whole page comes back"


def test_strength_labels_are_a_comma_separated_list_checked_against_the_scale(as_user, campaign):
    client = as_user("lead")
    client.post(settings_url(campaign), form_data(campaign, strength_scale="3", strength_labels="small, some,  big "))
    campaign.refresh_from_db()
    assert (campaign.strength_scale, campaign.strength_labels) == (3, ["small", "some", "big"])
    response = client.post(settings_url(campaign), form_data(campaign, strength_labels="one, two"))
    assert response.status_code == 422
    assert "Expected 3 labels, one per strength level, got 2." in response.content.decode()


def test_a_blank_weight_means_the_default_and_is_not_stored(as_user, campaign):
    client = as_user("lead")
    client.post(settings_url(campaign), form_data(campaign, weight_entropy="2.5", threshold_max_share="0.1"))
    campaign.refresh_from_db()
    assert campaign.priority_weights == {"entropy": 2.5}
    assert campaign.surface_thresholds == {"max_share": 0.1}
    page = client.get(settings_url(campaign)).content.decode()
    assert 'name="weight_entropy" value="2.5"' in page

    client.post(settings_url(campaign), form_data(campaign, weight_entropy="", threshold_max_share=""))
    campaign.refresh_from_db()
    assert campaign.priority_weights == {} and campaign.surface_thresholds == {}


def test_a_bad_weight_is_shown_on_its_fieldset(as_user, campaign):
    response = as_user("lead").post(settings_url(campaign), form_data(campaign, weight_noise="-1"), headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 422
    assert "settings-section--invalid" in page and "Expected non-negative numbers" in page
    campaign.refresh_from_db()
    assert campaign.priority_weights == {}


def test_a_double_submitted_settings_form_changes_the_campaign_once(
    as_user, campaign, django_capture_on_commit_callbacks
):
    run = ModelRun.objects.create(campaign=campaign, status="succeeded", trigger="labels")
    Campaign.objects.filter(pk=campaign.pk).update(active_model=run)
    client = as_user("lead")
    data = form_data(campaign, weight_shortcut="2")
    with django_capture_on_commit_callbacks() as first:
        client.post(settings_url(campaign), data, headers=HTMX)
    with django_capture_on_commit_callbacks() as second:
        response = client.post(settings_url(campaign), data, headers=HTMX)
    assert len(first) == 1, "changed weights refresh the priorities"
    assert second == [], "the second submit changes nothing, so nothing is refreshed"
    assert response.status_code == 200 and "Settings saved." in response.content.decode()


def test_saving_settings_writes_only_the_changed_columns(campaign):
    stale = Campaign.objects.get(pk=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(human_labels=41)  # labels counted meanwhile
    campaign_update(campaign=stale, name="Renamed")
    assert Campaign.objects.values_list("name", "human_labels").get(pk=campaign.pk) == ("Renamed", 41)


# Creating a campaign -------------------------------------------------------------------------------


def test_staff_create_a_campaign_and_become_its_lead(client, staff, campaign):
    client.force_login(staff)
    page = client.get(reverse("campaign-new")).content.decode()
    assert "Create campaign" in page and 'name="overlap" value="3"' in page

    data = {**form_data(Campaign()), "name": "Counting", "instructions": "Count *all* balls.", "strength_labels": ""}
    response = client.post(reverse("campaign-new"), data)

    created = Campaign.objects.get(name="Counting")
    assert response.status_code == 302 and response["Location"] == settings_url(created)
    assert created.instructions == "Count *all* balls." and created.created_by == staff
    assert member(created, "staff").role == "lead"
    assert created.priority_weights == {}
    assert created.strength_labels == ["negligible", "slight", "clear", "significant"], "blank takes the defaults"


def test_a_double_submitted_create_form_creates_one_campaign(client, staff, campaign):
    client.force_login(staff)
    data = {**form_data(Campaign()), "name": "Once"}
    first = client.post(reverse("campaign-new"), data, headers=HTMX)
    second = client.post(reverse("campaign-new"), data, headers=HTMX)
    assert first.status_code == 200 and first["HX-Redirect"].endswith("/settings/")
    assert second.status_code == 422
    assert "You already created a campaign named &#x27;Once&#x27;" in second.content.decode()
    assert Campaign.objects.filter(name="Once").count() == 1


def test_create_errors_show_on_the_fields(client, staff, campaign):
    client.force_login(staff)
    response = client.post(reverse("campaign-new"), {**form_data(Campaign()), "name": "", "strength_scale": "11"})
    page = response.content.decode()
    assert response.status_code == 422
    assert "The campaign was not created" in page
    assert "This field is required." in page
    assert not Campaign.objects.filter(created_by=staff).exists()


# Markdown instructions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "kept", "dropped"),
    [
        ("<script>alert(1)</script>\n\nHello", ["<p>Hello</p>"], ["<script", "alert(1)"]),
        ('<p onclick="steal()">Hi</p>', ["Hi"], ["onclick", "steal()"]),
        ('<a href="https://x.org" onmouseover="steal()">x</a>', ['href="https://x.org"'], ["onmouseover"]),
        ("[click](javascript:alert(1))", [">click</a>"], ["javascript:", "alert(1)"]),
        ("[rel](/admin/)", [">rel</a>"], ["/admin/"]),
        ("![cat](https://e.org/cat.png) <img src=x onerror=alert(2)>", [], ["<img", "onerror", "cat.png"]),
        ("<iframe src='https://e.org'></iframe><style>body{}</style>Text", ["Text"], ["<iframe", "<style", "body{}"]),
        ("<b>bold</b> and <div class='x'>box</div>", ["bold", "box"], ["<b>", "<div", "class="]),
    ],
)
def test_markdown_strips_what_is_not_allowed(markdown, kept, dropped):
    html = render_markdown(markdown)
    for text in kept:
        assert text in html
    for text in dropped:
        assert text not in html


def test_markdown_keeps_the_allowed_markup():
    html = render_markdown(
        "# Task\n## Steps\n\n*Look* **closely** at `the image`.\nThen decide.\n\n- one\n- two\n\n1. first\n\n"
        "> a quote\n\n---\n\n```\ncode <b>\n```\n\n[guide](https://example.org/guide) <mailto:lead@example.org>"
    )
    for fragment in (
        "<h3>Task</h3>",
        "<h4>Steps</h4>",
        "<em>Look</em> <strong>closely</strong> at <code>the image</code>.<br>",
        "<ul>\n<li>one</li>",
        "<ol>\n<li>first</li>",
        "<blockquote>",
        "<hr>",
        "<pre><code>code &lt;b&gt;\n</code></pre>",
        '<a href="https://example.org/guide" target="_blank" rel="noopener noreferrer">guide</a>',
        'href="mailto:lead@example.org"',
    ):
        assert fragment in html
    assert render_markdown("") == ""


def test_annotators_see_the_instructions_rendered(as_user, campaign):
    factories.make_pairs(campaign, 1)
    campaign_update(campaign=campaign, instructions="Flag **invented** objects.\n\n<script>alert(1)</script>")
    page = as_user("ann1").get(reverse("label-page", args=[campaign.pk])).content.decode()
    assert '<div class="instructions__body"><p>Flag <strong>invented</strong> objects.</p>' in page
    assert "alert(1)" not in page


def test_the_preview_renders_posted_markdown(as_user, campaign):
    data = {"instructions": "*new* <img src=x>"}
    response = as_user("lead").post(reverse("instructions-preview"), data, headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="instructions-preview"' in page and "<em>new</em>" in page and "<img" not in page


# Campaign status -------------------------------------------------------------------------------------


def status_url(campaign: Campaign) -> str:
    return reverse("campaign-status", args=[campaign.pk])


def test_pausing_stops_labeling_with_a_clear_message_and_resuming_restarts_it(as_user, campaign):
    factories.make_pairs(campaign, 2)
    response = as_user("lead").post(status_url(campaign), {"status": "paused"}, headers=HTMX)
    assert response.status_code == 200 and "Resume labeling" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"

    page = as_user("ann1").get(reverse("label-page", args=[campaign.pk]))
    assert page.status_code == 409
    assert f"Campaign {campaign.pk} is paused: no new pairs are handed out." in page.content.decode()

    response = as_user("lead").post(status_url(campaign), {"status": "active"})
    assert response.status_code == 302 and response["Location"] == settings_url(campaign)
    assert as_user("ann1").get(reverse("label-page", args=[campaign.pk])).status_code == 200


def test_closing_is_final_for_leads_and_staff_may_reopen(as_user, client, campaign, staff):
    client = as_user("lead")
    assert client.post(status_url(campaign), {"status": "closed"}).status_code == 302
    assert client.post(status_url(campaign), {"status": "closed"}).status_code == 302, "closing twice is one change"
    assert Campaign.objects.get(pk=campaign.pk).status == "closed"
    page = client.get(settings_url(campaign)).content.decode()
    assert "leads cannot reopen it" in page and "Reopen" not in page and "Pause labeling" not in page

    refused = client.post(status_url(campaign), {"status": "active"}, headers=HTMX)
    assert refused.status_code == 409 and refused["HX-Retarget"] == "#flash"
    assert f"Campaign {campaign.pk} is closed; only staff can reopen it." in refused.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == "closed"
    assert as_user("ann1").get(reverse("label-page", args=[campaign.pk])).status_code == 409

    client.force_login(staff)
    assert "Reopen" in client.get(settings_url(campaign)).content.decode()
    assert client.post(status_url(campaign), {"status": "active"}).status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).status == "active"


def test_an_unknown_status_is_refused(as_user, campaign):
    response = as_user("lead").post(status_url(campaign), {"status": "archived"})
    assert response.status_code == 400
    assert "Expected status to be one of active, paused, closed; got &#x27;archived&#x27;." in response.content.decode()


# Members ---------------------------------------------------------------------------------------------


def members_url(campaign: Campaign) -> str:
    return reverse("campaign-members", args=[campaign.pk])


def member_url(campaign: Campaign, membership: Membership) -> str:
    return reverse("campaign-member", args=[campaign.pk, membership.pk])


def test_members_page_lists_roles_pauses_and_label_counts(as_user, campaign):
    factories.make_pairs(campaign, 2)
    client = as_user("ann1")
    client.get(reverse("label-page", args=[campaign.pk]))
    assignment = campaign.pairs.first().assignments.get()
    client.post(reverse("label-submit", args=[campaign.pk]), {"assignment": assignment.pk, "more_hallucinated": "both"})
    membership_pause(membership=member(campaign, "ann2"), reason="Too fast on <gold> pairs")

    page = as_user("lead").get(members_url(campaign)).content.decode()
    ann1, ann2 = member(campaign, "ann1"), member(campaign, "ann2")
    row = page[page.index(f'id="member-{ann1.pk}"') :]
    assert '<td class="num" data-label="Labels">1</td>' in row[: row.index("</tr>")]
    row = page[page.index(f'id="member-{ann2.pk}"') :]
    assert "Paused" in row and "Too fast on &lt;gold&gt; pairs" in row and 'value="resume"' in row
    assert page.index("lead") < page.index("ann1"), "leads come first"
    assert page.count('value="pause"') == 1, "only an active annotator can be paused"


def test_invite_an_existing_user_and_change_their_role(as_user, campaign, make_user):
    make_user("newbie")
    client = as_user("lead")
    response = client.post(members_url(campaign), {"username": "newbie", "role": "annotator"}, headers=HTMX)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="members-panel"')
    assert "newbie is annotator." in response.content.decode()
    assert member(campaign, "newbie").role == "annotator"

    response = client.post(members_url(campaign), {"username": "newbie", "role": "researcher"})
    assert response.status_code == 302 and response["Location"] == members_url(campaign)
    assert member(campaign, "newbie").role == "researcher"
    assert Membership.objects.filter(campaign=campaign, user__username="newbie").count() == 1


def test_a_double_submitted_invite_adds_one_membership(as_user, campaign, make_user):
    make_user("newbie")
    client = as_user("lead")
    for _ in range(2):
        assert client.post(members_url(campaign), {"username": "newbie", "role": "annotator"}).status_code == 302
    assert Membership.objects.filter(campaign=campaign, user__username="newbie").count() == 1


def test_inviting_an_unknown_user_shows_the_error_on_the_field(as_user, campaign):
    response = as_user("lead").post(members_url(campaign), {"username": "ghost", "role": "annotator"}, headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 422
    assert "No such user." in page and 'value="ghost"' in page


def test_remove_a_member_returns_their_leases(as_user, campaign):
    factories.make_pairs(campaign, 1)
    as_user("ann1").get(reverse("label-page", args=[campaign.pk]))
    ann1 = member(campaign, "ann1")
    client = as_user("lead")
    response = client.post(member_url(campaign, ann1), {"action": "remove"}, headers=HTMX)
    assert response.status_code == 200 and "ann1 was removed from the campaign." in response.content.decode()
    assert not Membership.objects.filter(pk=ann1.pk).exists()
    assert campaign.pairs.get().assignments.get().status == "skipped"
    assert client.post(member_url(campaign, ann1), {"action": "remove"}).status_code == 404, "removed once"


def test_the_last_lead_cannot_be_removed_or_demoted(as_user, campaign):
    lead = member(campaign, "lead")
    client = as_user("lead")
    response = client.post(member_url(campaign, lead), {"action": "remove"}, headers=HTMX)
    assert response.status_code == 409
    assert "lead is the only lead of campaign" in response.content.decode()
    response = client.post(members_url(campaign), {"username": "lead", "role": "annotator"})
    assert response.status_code == 409 and "make another member lead first" in response.content.decode()
    assert member(campaign, "lead").role == "lead"


def test_a_lead_who_removes_themselves_goes_back_to_their_campaigns(as_user, campaign):
    client = as_user("lead")
    client.post(members_url(campaign), {"username": "res", "role": "lead"})
    response = client.post(member_url(campaign, member(campaign, "lead")), {"action": "remove"}, headers=HTMX)
    assert response["HX-Redirect"] == reverse("campaign-list")
    assert client.get(settings_url(campaign)).status_code == 404


def test_pause_and_resume_an_annotator(as_user, api_as, campaign):
    factories.make_pairs(campaign, 2)
    ann1 = member(campaign, "ann1")
    client = as_user("lead")
    response = client.post(member_url(campaign, ann1), {"action": "pause", "reason": "Check the gold guide"})
    assert response.status_code == 302
    ann1.refresh_from_db()
    paused_at = ann1.paused_at
    assert paused_at is not None and ann1.paused_reason == "Check the gold guide"
    client.post(member_url(campaign, ann1), {"action": "pause", "reason": "Check the gold guide"})
    ann1.refresh_from_db()
    assert ann1.paused_at == paused_at, "pausing twice keeps the first pause"

    refused = api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")
    assert refused.status_code == 403 and "Check the gold guide" in refused.json()["detail"]
    page = as_user("ann1").get(reverse("label-page", args=[campaign.pk]))
    assert page.status_code == 403 and "Check the gold guide" in page.content.decode()

    as_user("lead").post(member_url(campaign, ann1), {"action": "resume"}, headers=HTMX)
    assert api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").status_code == 200


def test_only_annotators_are_paused(as_user, campaign):
    response = as_user("lead").post(member_url(campaign, member(campaign, "res")), {"action": "pause"}, headers=HTMX)
    assert response.status_code == 409 and "Only annotators are paused" in response.content.decode()
    assert member(campaign, "res").paused_at is None


def test_an_unknown_member_action_is_refused(as_user, campaign):
    response = as_user("lead").post(member_url(campaign, member(campaign, "ann1")), {"action": "ban"})
    assert response.status_code == 400
    assert member(campaign, "ann1").pk


# The campaign list ----------------------------------------------------------------------------------


def test_campaign_list_links_settings_and_members_for_leads_and_new_campaign_for_staff(as_user, campaign, staff):
    links = (settings_url(campaign), members_url(campaign))
    page = as_user("lead").get(reverse("campaign-list")).content.decode()
    assert all(link in page for link in links) and reverse("campaign-new") not in page
    for username in ("ann1", "res"):
        page = as_user(username).get(reverse("campaign-list")).content.decode()
        assert not any(link in page for link in links)
    page = as_user("staff").get(reverse("campaign-list")).content.decode()
    assert reverse("campaign-new") in page and all(link in page for link in links)
