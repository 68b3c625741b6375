"""Who may open which page: every page and endpoint of annotate/views/urls.py against every role.

Roles: the campaign's lead, annotator and researcher, staff (every role everywhere), the lead of another
campaign (a stranger here: 404, never data) and anonymous (sent to the login form). An allowed user gets
the page's own answer; a member whose role does not allow it gets 403; a stranger gets the same 404 as
for an id that does not exist, with nothing of the campaign in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django_htmx.http import HTMX_STOP_POLLING

from annotate.models import Campaign, ExportSnapshot, ImportJob, ImportUpload, Membership, ModelRun
from annotate.services.campaigns import campaign_update
from annotate.views.urls import urlpatterns
from tests import factories

# What the stranger must never see: the campaign's name, instructions, content and members.
SECRET = "Quokka"
LEAD, ANNOTATOR, RESEARCHER, STAFF, STRANGER, ANONYMOUS = "lead", "ann1", "res", "staff", "otherlead", None
USERS = (LEAD, ANNOTATOR, RESEARCHER, STAFF, STRANGER, ANONYMOUS)
SIGNED_IN = frozenset({LEAD, ANNOTATOR, RESEARCHER, STAFF, STRANGER})
NOT_PAGES = {"login", "logout"}  # Django's own views, open to everyone


@dataclass(frozen=True)
class World:
    campaign: Campaign
    other: Campaign
    job: ImportJob
    upload: ImportUpload
    run: ModelRun
    snapshot: ExportSnapshot
    membership: Membership
    image: str


@dataclass(frozen=True)
class Page:
    name: str
    method: str
    allowed: frozenset[str]
    ok: int  # what an allowed user gets for `data`
    args: Callable[[World], list] = lambda world: [world.campaign.pk]
    data: dict = field(default_factory=dict)
    in_campaign: bool = True  # an object of the campaign: strangers get 404, not 403

    def url(self, world: World) -> str:
        return reverse(self.name, args=self.args(world))

    def __str__(self) -> str:
        return f"{self.method} {self.name}"


MANAGERS = frozenset({LEAD, STAFF})
READERS = frozenset({LEAD, RESEARCHER, STAFF})
LABELERS = frozenset({ANNOTATOR, STAFF})
MEMBERS = frozenset({LEAD, ANNOTATOR, RESEARCHER, STAFF})
NO_ID = "x"  # a form that does not parse: allowed users get the 400 or 422 of bad input, and nothing changes

PAGES = (
    Page("campaign-list", "get", SIGNED_IN, 200, args=lambda world: [], in_campaign=False),
    Page("campaign-new", "get", frozenset({STAFF}), 200, args=lambda world: [], in_campaign=False),
    Page("campaign-new", "post", frozenset({STAFF}), 422, args=lambda world: [], in_campaign=False),
    Page(
        "instructions-preview",
        "post",
        SIGNED_IN,
        200,
        args=lambda world: [],
        data={"instructions": "*hi*"},
        in_campaign=False,
    ),
    Page("campaign-settings", "get", MANAGERS, 200),
    Page("campaign-settings", "post", MANAGERS, 422),
    Page("campaign-status", "post", MANAGERS, 400, data={"status": NO_ID}),
    Page("campaign-members", "get", MANAGERS, 200),
    Page("campaign-members", "post", MANAGERS, 422),
    Page(
        "campaign-member",
        "post",
        MANAGERS,
        400,
        args=lambda world: [world.campaign.pk, world.membership.pk],
        data={"action": NO_ID},
    ),
    Page("label-page", "get", LABELERS, 200),
    Page("label-submit", "post", LABELERS, 400, data={"assignment": NO_ID}),
    Page("label-skip", "post", LABELERS, 400, data={"assignment": NO_ID}),
    Page("label-previous", "get", LABELERS, 404),  # no label yet to go back to
    Page("label-edit", "post", LABELERS, 400, data={"assignment": NO_ID}),
    Page("my-work-page", "get", LABELERS, 200),
    Page("import-page", "get", MANAGERS, 200),
    Page("import-page", "post", MANAGERS, 422),
    Page("import-status", "get", MANAGERS, 200, args=lambda world: [world.job.pk]),
    Page("import-preview", "post", MANAGERS, 422),
    Page("import-map", "get", MANAGERS, 200, args=lambda world: [world.campaign.pk, world.upload.pk]),
    Page("import-map", "post", MANAGERS, 422, args=lambda world: [world.campaign.pk, world.upload.pk]),
    Page("model-page", "get", READERS, 200),
    Page("model-page", "post", MANAGERS, 302),  # a retrain queued, then back to the page
    Page("model-run-status", "get", READERS, 302, args=lambda world: [world.run.pk]),
    Page("surfaced-page", "get", READERS, 200),
    Page("dashboard-page", "get", READERS, 200),
    Page("exports-page", "get", READERS, 200),
    Page("exports-page", "post", READERS, 422),
    Page("export-status", "get", READERS, 302, args=lambda world: [world.snapshot.pk]),
    Page("image-file", "get", MEMBERS, 200, args=lambda world: [world.image]),
)


@pytest.fixture
def world(campaign, make_user) -> World:
    """The demo campaign with something of every kind in it, every name in it holding SECRET."""
    make_user(STAFF, staff=True)
    campaign_update(campaign=campaign, name=f"{SECRET} survey", instructions=f"{SECRET} instructions")
    pair = factories.make_pairs(campaign, 2, prompt=f"How many {SECRET}s?", texts=(f"{SECRET} one", f"{SECRET} two"))[0]
    return World(
        campaign=campaign,
        other=Campaign.objects.get(name="Other"),
        job=ImportJob.objects.create(campaign=campaign, filename=f"{SECRET}.zip", status="succeeded"),
        upload=ImportUpload.objects.create(
            campaign=campaign, filename=f"{SECRET}.jsonl", file=f"imports/{SECRET}.jsonl"
        ),
        run=ModelRun.objects.create(campaign=campaign, status="succeeded", trigger="labels"),
        snapshot=ExportSnapshot.objects.create(campaign=campaign, format="reward", status="succeeded"),
        membership=Membership.objects.get(campaign=campaign, user__username="ann2"),
        image=pair.item.image.sha256,
    )


def _client_as(client, username: str | None):
    if username is not None:
        client.force_login(get_user_model().objects.get(username=username))
    return client


def _request(client, page: Page, world: World):
    return getattr(client, page.method)(page.url(world), page.data)


def test_the_matrix_covers_every_page():
    pages = {pattern.name for pattern in urlpatterns} - NOT_PAGES
    assert pages == {page.name for page in PAGES}, "a new page needs its row in PAGES"


@pytest.mark.parametrize("username", USERS, ids=lambda username: username or "anonymous")
@pytest.mark.parametrize("page", PAGES, ids=str)
def test_page_against_role(client, world, page, username):
    response = _request(_client_as(client, username), page, world)
    body = response.content.decode(errors="replace") if not response.streaming else ""
    if username is ANONYMOUS and page.name == "image-file":
        # Images are also fetched with API tokens, so the view answers 404 rather than a login redirect.
        assert response.status_code == 404
    elif username is ANONYMOUS:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    elif username in page.allowed:
        assert response.status_code == page.ok, body[:2000]
        if response.status_code == 302:
            assert not response["Location"].startswith(reverse("login"))
    elif username == STRANGER and page.in_campaign:
        assert response.status_code == 404
        assert SECRET not in body
    else:
        assert response.status_code == 403, body[:2000]
    if username == STRANGER:
        assert SECRET not in body, "nothing of another campaign leaks to a stranger"


def _main(response) -> str:
    """The page's own content, without the per-response CSRF token of the header."""
    page = response.content.decode()
    return page[page.index("<main") :]


def test_a_strangers_campaign_answers_like_a_missing_one(client, world):
    """Another campaign's id and an id that does not exist give the same page, but for the number."""
    client = _client_as(client, STRANGER)
    missing = Campaign.objects.order_by("-pk").first().pk + 100
    for name in ("campaign-settings", "campaign-members", "label-page", "model-page"):
        foreign = client.get(reverse(name, args=[world.campaign.pk]))
        absent = client.get(reverse(name, args=[missing]))
        assert (foreign.status_code, absent.status_code) == (404, 404)
        assert _main(foreign).replace(str(world.campaign.pk), str(missing)) == _main(absent)


def test_ids_of_another_campaign_behind_ones_own_are_404(client, world):
    """A lead's own campaign id in the URL does not open another campaign's member, job or run."""
    client = _client_as(client, STRANGER)
    own = world.other.pk
    url = reverse("campaign-member", args=[own, world.membership.pk])
    response = client.post(url, {"action": "remove"})
    assert response.status_code == 404 and SECRET not in response.content.decode()
    assert Membership.objects.filter(pk=world.membership.pk).exists()
    response = client.get(reverse("import-map", args=[own, world.upload.pk]))
    assert response.status_code == 404 and SECRET not in response.content.decode()
    for name, pk in (
        ("import-status", world.job.pk),
        ("model-run-status", world.run.pk),
        ("export-status", world.snapshot.pk),
    ):
        response = client.get(reverse(name, args=[pk]), headers={"HX-Request": "true"})
        assert response.status_code == 404 and SECRET not in response.content.decode()


def test_a_lead_is_a_stranger_in_every_other_campaign(client, world):
    """The demo campaign's lead gets 404 on each campaign page of the other campaign."""
    client = _client_as(client, LEAD)
    for page in PAGES:
        if not page.in_campaign or page.name in {
            "campaign-member",
            "import-map",
            "import-status",
            "model-run-status",
            "export-status",
            "image-file",
        }:
            continue
        response = getattr(client, page.method)(reverse(page.name, args=[world.other.pk]), page.data)
        assert response.status_code == 404, page
        assert world.other.name not in response.content.decode()


def test_polling_fragments_follow_the_same_rules(client, world):
    """The htmx fragments of import jobs, model runs and exports: allowed roles get the fragment, others nothing."""
    for username, status in ((LEAD, HTMX_STOP_POLLING), (RESEARCHER, 403), (ANNOTATOR, 403), (STRANGER, 404)):
        client = _client_as(client, username)
        response = client.get(reverse("import-status", args=[world.job.pk]), headers={"HX-Request": "true"})
        assert response.status_code == status
    client = _client_as(client, RESEARCHER)
    response = client.get(reverse("model-run-status", args=[world.run.pk]), headers={"HX-Request": "true"})
    assert response.status_code == HTMX_STOP_POLLING
    for username, status in ((RESEARCHER, HTMX_STOP_POLLING), (ANNOTATOR, 403), (STRANGER, 404)):
        client = _client_as(client, username)
        response = client.get(reverse("export-status", args=[world.snapshot.pk]), headers={"HX-Request": "true"})
        assert response.status_code == status
