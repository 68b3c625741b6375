"""Another campaign's ids open nothing (issue 7, item 3): every address of the URL conf that takes an id,
called by each member of campaign A with the ids of campaign B's objects, with every method, answers 404
(or 405 for a method the address does not take), shows nothing of B and changes nothing of B.

The addresses come from the URL conf (pages and API), so an address added later is tried too; one whose id
this file cannot fill from B fails `test_every_id_in_the_url_conf_is_tried` until a row is added to IDS.
Ids that travel in the body (the assignment of a label or a skip) are tried beside them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token

from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    ExportSnapshot,
    ImportJob,
    ImportUpload,
    Item,
    Membership,
    ModelRun,
    Pair,
)
from annotate.services.assignments import assignment_next
from annotate.services.campaigns import campaign_update, membership_set
from tests import factories
from tests.test_stats import label

# What a member of A must never see of B: B's name, instructions, content and members all hold it.
SECRET = "Wombat"
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")
# Django's admin is for staff, who see every campaign by design; its addresses are not campaign-scoped.
NOT_CAMPAIGN_SCOPED = ("admin",)
# Members of A who try B's ids: every role.
A_USERS = {"otherlead": "lead", "a-ann": "annotator", "a-res": "researcher"}


@dataclass(frozen=True)
class Route:
    """One address of the URL conf: its reversible name, the names of its ids, and whether it is the API."""

    name: str
    ids: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.name.startswith("api-")


def url_patterns(
    patterns: list | None = None, namespace: str = "", prefix: str = ""
) -> Iterator[tuple[str, str, URLPattern]]:
    """Yield (namespace, route text, pattern) for every pattern of the root URL conf, nested ones included."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from url_patterns(entry.url_patterns, inner, prefix + str(entry.pattern))
        else:
            yield namespace, prefix + str(entry.pattern), entry


def routes() -> list[Route]:
    """Every named address of the project's own URL conf (not the admin), with the ids it takes."""
    found = []
    for namespace, text, pattern in url_patterns():
        if text.startswith(NOT_CAMPAIGN_SCOPED) or pattern.name is None:
            continue
        found.append(Route(namespace + pattern.name, tuple(pattern.pattern.regex.groupindex)))
    return found


ID_ROUTES = [route for route in routes() if route.ids]


@dataclass(frozen=True)
class World:
    a: Campaign
    b: Campaign
    ids: dict[str, object]  # id name in the URL conf -> B's object's id
    b_assignment: Assignment


@pytest.fixture
def world(campaign, make_user) -> World:
    """B is the demo campaign with something of every kind, each holding SECRET; A is "Other", with every role."""
    b = campaign
    a = Campaign.objects.get(name="Other")
    for username, role in A_USERS.items():
        if role != "lead":
            make_user(username)
            membership_set(campaign=a, username=username, role=role)
    factories.make_pairs(a, 2)
    campaign_update(campaign=b, name=f"{SECRET} survey", instructions=f"{SECRET} instructions")
    # B's image is B's alone: a colour no pair of A shows.
    image = factories.make_image((1, 2, 3))
    pairs = factories.make_pairs(b, 3, prompt=f"{SECRET}?", texts=(f"{SECRET} a", f"{SECRET} b"))
    Item.objects.filter(campaign=b).update(image=image)
    ann1 = get_user_model().objects.get(username="ann1")
    label(pairs[0], "ann1", "a", 2)
    assignment = assignment_next(campaign=b, annotator=ann1).assignment
    job = ImportJob.objects.create(
        campaign=b, filename=f"{SECRET}.zip", status="failed", errors=[{"line": 1, "reason": SECRET}]
    )
    upload = ImportUpload.objects.create(campaign=b, filename=f"{SECRET}.jsonl", file=f"imports/{SECRET}.jsonl")
    run = ModelRun.objects.create(campaign=b, trigger="labels", status="succeeded", metrics={"note": SECRET})
    snapshot = ExportSnapshot.objects.create(campaign=b, format="annotations", status="succeeded", rows=1)
    snapshot.file.save("b.jsonl", ContentFile(f'{{"prompt": "{SECRET}"}}\n'.encode()))
    membership = Membership.objects.get(campaign=b, user=ann1)
    ids = factories.url_ids(
        membership=membership,
        job=job,
        upload=upload,
        run=run,
        snapshot=snapshot,
        assignment=assignment,
        annotation=Annotation.objects.get(pair=pairs[0], annotator=ann1),
        image=image,
    )
    return World(a=a, b=b, ids=ids, b_assignment=assignment)


def b_state(b: Campaign) -> str:
    """Everything of B a request could change, as one comparable text."""
    rows = {
        "campaign": list(Campaign.objects.filter(pk=b.pk).values()),
        "members": list(Membership.objects.filter(campaign=b).order_by("pk").values()),
        "pairs": list(Pair.objects.filter(campaign=b).order_by("pk").values()),
        "assignments": list(Assignment.objects.filter(pair__campaign=b).order_by("pk").values()),
        "annotations": list(Annotation.objects.filter(pair__campaign=b).order_by("pk").values()),
        "jobs": list(ImportJob.objects.filter(campaign=b).order_by("pk").values()),
        "runs": list(ModelRun.objects.filter(campaign=b).order_by("pk").values()),
        "exports": list(ExportSnapshot.objects.filter(campaign=b).order_by("pk").values()),
    }
    return json.dumps(rows, default=str, sort_keys=True)


def _client(username: str, *, api: bool) -> Client:
    user = get_user_model().objects.get(username=username)
    client = Client()
    if api:
        token, _ = Token.objects.get_or_create(user=user)
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    else:
        client.force_login(user)
    return client


# What a request that ignored the id would do with it: each body asks for a change of B.
HOSTILE_FORMS = {
    "campaign-settings": {"name": "Taken over", "overlap": "1"},
    "campaign-status": {"status": "closed"},
    "campaign-members": {"username": "a-ann", "role": "lead"},
    "campaign-member": {"action": "remove"},
    "label-submit": {"more_hallucinated": "neither"},
    "label-skip": {},
    "api-campaign": {"name": "Taken over"},
    "api-members": {"username": "a-ann", "role": "lead"},
    "api-exports": {"format": "annotations"},
}


def _call(client: Client, method: str, url: str, route: Route, assignment: int):
    body = dict(HOSTILE_FORMS.get(route.name, {}))
    if route.name.startswith("label-"):
        body["assignment"] = assignment
    if method in ("get", "head", "options", "delete"):
        return getattr(client, method)(url)
    if route.is_api:
        return getattr(client, method)(url, json.dumps(body), content_type="application/json")
    return getattr(client, method)(url, body)


def _assert_refused(response, method: str, where: str) -> None:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert SECRET.encode() not in body, f"{where}: B's data leaked"
    if method == "options" and response.status_code == 200:
        # DRF's OPTIONS describes the endpoint, never an object: nothing of B is looked up.
        assert set(json.loads(body)) <= {"name", "description", "renders", "parses"}, f"{where}: {body[:300]}"
        return
    assert response.status_code in (404, 405), f"{where}: {response.status_code} {body[:300]!r}"


def test_every_id_in_the_url_conf_is_tried(world):
    unfilled = {(route.name, name) for route in ID_ROUTES for name in route.ids if name not in world.ids}
    assert not unfilled, f"add B's object for these ids to the `world` fixture: {sorted(unfilled)}"
    assert len(ID_ROUTES) >= 20, "the URL conf walk found the pages and the API"


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda route: route.name)
def test_members_of_another_campaign_get_404_with_bs_ids(world, route):
    before = b_state(world.b)
    url = reverse(route.name, kwargs={name: world.ids[name] for name in route.ids})
    for username in A_USERS:
        client = _client(username, api=route.is_api)
        statuses = set()
        for method in METHODS:
            response = _call(client, method, url, route, world.b_assignment.pk)
            _assert_refused(response, method, f"{username} {method.upper()} {url}")
            statuses.add(response.status_code)
        assert 404 in statuses, f"{url}: no method reached the access check ({statuses})"
    assert b_state(world.b) == before, "B changed"


@pytest.mark.parametrize(
    "route", [r for r in ID_ROUTES if "campaign_id" in r.ids and len(r.ids) > 1], ids=lambda r: r.name
)
def test_ones_own_campaign_id_does_not_open_bs_objects(world, route):
    """A's campaign id beside B's object id (a member of B under A's campaign): 404 too."""
    before = b_state(world.b)
    kwargs = {name: world.ids[name] for name in route.ids} | {"campaign_id": world.a.pk}
    url = reverse(route.name, kwargs=kwargs)
    for method in ("get", "post"):
        _assert_refused(_call(_client("otherlead", api=route.is_api), method, url, route, 0), method, url)
    assert b_state(world.b) == before


BODY_ID_ROUTES = {"label-submit": "page", "label-skip": "page", "api-annotations": "api"}


@pytest.mark.parametrize("name", BODY_ID_ROUTES)
def test_bs_assignment_in_the_body_is_404_under_ones_own_campaign(world, name):
    """The label form and POST /annotations/ carry the assignment in the body: B's answers like a missing one."""
    before = b_state(world.b)
    is_api = BODY_ID_ROUTES[name] == "api"
    url = reverse(name) if is_api else reverse(name, args=[world.a.pk])
    body = {"assignment": world.b_assignment.pk, "more_hallucinated": "neither"}
    client = _client("a-ann", api=is_api)
    if is_api:
        response = client.post(url, json.dumps(body), content_type="application/json")
    else:
        response = client.post(url, body)
    _assert_refused(response, "post", f"{name} with B's assignment")
    assert b_state(world.b) == before


def test_the_probe_sees_bs_data_where_it_is_allowed(world):
    """The check can fail: B's own lead, on the same addresses, does get B's secret."""
    lead = _client("lead", api=False)
    assert SECRET in lead.get(reverse("campaign-settings", args=[world.b.pk])).content.decode()
    api = _client("lead", api=True)
    assert SECRET in api.get(reverse("api-import", args=[world.ids["job_id"]])).content.decode()
    download = api.get(reverse("api-export-download", args=[world.ids["export_id"]]))
    assert SECRET.encode() in b"".join(download.streaming_content)
