"""CSRF on every form and every session-authenticated write (issue 7, item 3).

Three proofs, each derived from the URL conf so that an address added later cannot escape them:
1. no view is exempt from Django's CSRF check except DRF's (whose SessionAuthentication checks the token
   itself) and the API's JSON 404, which does nothing;
2. a signed-in user's POST without the token is refused with 403 at every named address, admin included;
3. with the token, every address that takes a write does it: a table of real submissions, one per
   (address, method), that must list every address that answers a write with anything but 405.
The clients enforce CSRF as a browser meets it (`Client(enforce_csrf_checks=True)`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import NoReverseMatch, reverse
from rest_framework.authentication import SessionAuthentication
from rest_framework.views import APIView

from annotate import clock
from annotate.api.authentication import TokenAuthentication
from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    ExportSnapshot,
    ImportJob,
    ImportUpload,
    Membership,
    ModelRun,
    Pair,
)
from annotate.services.assignments import assignment_next
from tests import factories
from tests.test_hostile_ids import routes, url_patterns
from tests.test_import import data_uri

WRITE_METHODS = ("post", "put", "patch", "delete")
# Views that are exempt on purpose, and why.
EXEMPT = {
    "api-token": "takes a username and password, never a cookie: a forged request proves nothing it did not know",
    "api-not-found": "answers 404 to any address under /api/ that names no endpoint, and does nothing",
}
# Values for the ids of admin addresses (any value reaches the CSRF check, which runs before the view).
ADMIN_IDS = {"app_label": "annotate", "object_id": "1", "content_type_id": "1", "id": "1", "url": "x"}
DJANGO_REFUSAL = "CSRF verification failed"
DRF_REFUSAL = "CSRF Failed"


@dataclass(frozen=True)
class World:
    campaign: Campaign
    ids: dict[str, int | str]


@pytest.fixture
def world(campaign, make_user) -> World:
    make_user("staff", staff=True)
    pairs = factories.make_pairs(campaign, 4)
    job = ImportJob.objects.create(campaign=campaign, filename="x.zip", status="failed")
    run = ModelRun.objects.create(campaign=campaign, trigger="labels", status="succeeded")
    snapshot = ExportSnapshot.objects.create(campaign=campaign, format="annotations")
    ann2 = get_user_model().objects.get(username="ann2")
    ids = factories.url_ids(
        membership=Membership.objects.get(campaign=campaign, user=ann2),
        job=job,
        upload=_upload(campaign),
        run=run,
        snapshot=snapshot,
        assignment=assignment_next(campaign=campaign, annotator=ann2).assignment,
        annotation=_given(pairs[3], ann2),
        image=pairs[0].item.image,
    )
    return World(campaign=campaign, ids=ids)


def _given(pair: Pair, annotator) -> Annotation:
    """A label the annotator gave just now, so it may still be changed."""
    now = clock.now()
    assignment = Assignment.objects.create(
        pair=pair, annotator=annotator, left="a", status="done", leased_at=now, expires_at=now, finished_at=now
    )
    return Annotation.objects.create(
        assignment=assignment, pair=pair, annotator=annotator, more_hallucinated="a", strength=2, shown_left="a"
    )


def _edited(world: World) -> bool:
    return Annotation.objects.get(pk=world.ids["annotation_id"]).version > 1


def _upload(campaign: Campaign) -> ImportUpload:
    """A file kept for the mapping page, in a layout only a column mapping reads."""
    upload = ImportUpload(campaign=campaign, filename="custom.jsonl")
    upload.file.save("custom.jsonl", ContentFile(CUSTOM_ROW), save=True)
    return upload


def signed_in(username: str | None) -> tuple[Client, str]:
    """A CSRF-enforcing client signed in as `username` (None: anonymous), and the token its pages carry."""
    client = Client(enforce_csrf_checks=True)
    if username is not None:
        client.force_login(get_user_model().objects.get(username=username))
    client.get(reverse("login") if username is None else reverse("campaign-list"))
    return client, client.cookies["csrftoken"].value


def _named_urls(world: World) -> list[tuple[str, str]]:
    """(name, url) for every named address of the URL conf, admin included, with ids filled."""
    found = []
    for namespace, _, pattern in url_patterns():
        if pattern.name is None:
            continue
        name = namespace + pattern.name
        kwargs = {key: world.ids.get(key, ADMIN_IDS.get(key)) for key in pattern.pattern.regex.groupindex}
        found.append((name, reverse(name, kwargs=kwargs)))
    return found


def _refused_for_csrf(response, *, with_token: Callable[[], object] | None = None) -> bool:
    """Tell whether the answer is a CSRF refusal: 403 saying so, or (a page that renders DRF's errors as a bare
    "403 Forbidden") a 403 that the same request with the token, `with_token()`, does not get."""
    body = response.content.decode(errors="replace")
    if response.status_code != 403:
        return False
    if DJANGO_REFUSAL in body or DRF_REFUSAL in body:
        return True
    return with_token is not None and with_token().status_code != 403


def test_no_view_skips_the_csrf_check():
    for namespace, text, pattern in url_patterns():
        view = pattern.callback
        if not getattr(view, "csrf_exempt", False):
            continue
        name = f"{namespace}{pattern.name}"
        if name in EXEMPT:
            continue
        cls = getattr(view, "cls", None)
        assert cls is not None and issubclass(cls, APIView), f"{text} ({name}) is exempt from CSRF"
        kinds = {type(authenticator) for authenticator in cls().get_authenticators()}
        assert kinds <= {TokenAuthentication, SessionAuthentication}, (
            f"{name}: only a token or the session (whose authentication checks CSRF) may authenticate, not {kinds}"
        )


def test_unnamed_addresses_are_the_admins_own():
    unnamed = [text for _, text, pattern in url_patterns() if pattern.name is None]
    assert unnamed and all(text.startswith("admin/") for text in unnamed), unnamed


def test_a_write_without_the_token_is_refused_everywhere(world):
    urls = _named_urls(world)
    assert len(urls) > 60, "the walk found the pages, the API and the admin"
    client, token = signed_in("staff")
    for name, url in urls:
        response = client.post(url, {"name": "forged"})
        if name in EXEMPT:
            assert response.status_code in (400, 404), f"{name}: {response.status_code}"
            continue
        with_token = partial(client.post, url, {"csrfmiddlewaretoken": token})
        assert _refused_for_csrf(response, with_token=with_token), f"POST {url} ({name}): {response.status_code}"
    assert Campaign.objects.filter(name="forged").count() == 0


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_writes_without_the_token_are_refused_on_the_api(world, method):
    client, token = signed_in("lead")
    for name, url in _named_urls(world):
        if not name.startswith("api-") or name in EXEMPT:
            continue
        send = getattr(client, method)
        response = send(url, json.dumps({"name": "forged"}), content_type="application/json")
        with_token = partial(send, url, "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert _refused_for_csrf(response, with_token=with_token), f"{method.upper()} {url}: {response.status_code}"
    assert Campaign.objects.filter(name="forged").count() == 0


def test_signing_in_without_the_token_is_refused(campaign):
    client, _ = signed_in(None)
    response = client.post(reverse("login"), {"username": "ann1", "password": "pw-ann1"})
    assert _refused_for_csrf(response)
    assert "_auth_user_id" not in client.session


def test_the_token_endpoint_ignores_the_session(world):
    """Exempt from CSRF because no cookie authenticates it: a signed-in browser gets no token without a password."""
    client, _ = signed_in("lead")
    response = client.post(reverse("api-token"), {})
    assert response.status_code == 400 and "token" not in response.json()


# ---------------------------------------------------------------------------------------------------------
# With the token: every write works. Each row: who, what is sent, the answer, and what must then be true.


@dataclass(frozen=True)
class Write:
    username: str | None
    data: Callable[[World], dict] = lambda world: {}
    status: int = 302
    check: Callable[[World], bool] = lambda world: True
    args: Callable[[World], dict] = lambda world: {"campaign_id": world.campaign.pk}
    files: dict = field(default_factory=dict)


def _settings_form(world: World, **changes) -> dict:
    from annotate.views.campaign_forms import CampaignForm

    initial = CampaignForm.initial_from(world.campaign)
    form = {key: value for key, value in initial.items() if value is not None and not isinstance(value, bool)}
    form |= {key: "on" for key, value in initial.items() if value is True}
    return form | changes


def _label(world: World, assignment: str) -> dict:
    return {"assignment": world.ids[assignment], "more_hallucinated": "neither"}


PACKAGE = b'{"external_id": "a"}\n'
CUSTOM_ROW = json.dumps({"question": "Q?", "picture": data_uri(factories.png_bytes()), "x": "1", "y": "2"})
CUSTOM_ROW = (CUSTOM_ROW + "\n").encode()
PAGE_WRITES: dict[str, Write] = {
    "login": Write(
        None, lambda w: {"username": "ann1", "password": "pw-ann1"}, args=lambda w: {}, check=lambda w: True
    ),
    "logout": Write("lead", args=lambda w: {}),
    "campaign-new": Write(
        "staff",
        lambda w: _settings_form(w, name="Made with a token"),
        args=lambda w: {},
        check=lambda w: Campaign.objects.filter(name="Made with a token").exists(),
    ),
    "instructions-preview": Write("ann1", lambda w: {"instructions": "*hi*"}, status=200, args=lambda w: {}),
    "campaign-settings": Write(
        "lead",
        lambda w: _settings_form(w, name="Renamed with a token"),
        check=lambda w: Campaign.objects.get(pk=w.campaign.pk).name == "Renamed with a token",
    ),
    "campaign-status": Write(
        "lead",
        lambda w: {"status": "paused"},
        check=lambda w: Campaign.objects.get(pk=w.campaign.pk).status == "paused",
    ),
    "campaign-members": Write(
        "lead",
        lambda w: {"username": "ann1", "role": "researcher"},
        check=lambda w: Membership.objects.get(campaign=w.campaign, user__username="ann1").role == "researcher",
    ),
    "campaign-member": Write(
        "lead",
        lambda w: {"action": "pause", "reason": "checking"},
        args=lambda w: {"campaign_id": w.campaign.pk, "membership_id": w.ids["membership_id"]},
        check=lambda w: Membership.objects.get(pk=w.ids["membership_id"]).paused_at is not None,
    ),
    "label-submit": Write(
        "ann2",
        lambda w: _label(w, "assignment_id"),
        check=lambda w: Annotation.objects.filter(assignment_id=w.ids["assignment_id"]).exists(),
    ),
    "label-skip": Write("ann2", lambda w: {"assignment": w.ids["assignment_id"]}),
    "label-edit": Write(
        "ann2",
        lambda w: {
            "assignment": Annotation.objects.get(pk=w.ids["annotation_id"]).assignment_id,
            "more_hallucinated": "neither",
        },
        check=_edited,
    ),
    "import-page": Write(
        "lead",
        files={"file": ("items.jsonl", PACKAGE)},
        check=lambda w: ImportJob.objects.filter(filename="items.jsonl").exists(),
    ),
    "import-preview": Write(
        "lead",
        files={"file": ("preview.jsonl", CUSTOM_ROW)},
        check=lambda w: ImportUpload.objects.filter(filename="preview.jsonl").exists(),
    ),
    "import-map": Write(
        "lead",
        lambda w: {
            "prompt": "question",
            "image": "picture",
            "answer_1": "x",
            "answer_2": "y",
            "preference": "none",
            "means": "better",
        },
        args=lambda w: {"campaign_id": w.campaign.pk, "upload_id": w.ids["upload_id"]},
        check=lambda w: ImportJob.objects.filter(filename="custom.jsonl").exists(),
    ),
    "model-page": Write("lead", check=lambda w: ModelRun.objects.filter(trigger="lead").exists()),
    "exports-page": Write(
        "res",
        lambda w: {"format": "annotations"},
        check=lambda w: ExportSnapshot.objects.filter(created_by__username="res").exists(),
    ),
}
API_WRITES: dict[tuple[str, str], Write] = {
    ("api-token", "post"): Write(None, lambda w: {"username": "ann1", "password": "pw-ann1"}, 200, args=lambda w: {}),
    ("api-users", "post"): Write(
        "staff", lambda w: {"username": "fresh", "password": "long-enough-pw"}, 201, args=lambda w: {}
    ),
    ("api-campaigns", "post"): Write("staff", lambda w: {"name": "API campaign"}, 201, args=lambda w: {}),
    ("api-campaign", "patch"): Write(
        "lead",
        lambda w: {"name": "Patched"},
        200,
        check=lambda w: Campaign.objects.get(pk=w.campaign.pk).name == "Patched",
    ),
    ("api-members", "post"): Write("lead", lambda w: {"username": "ann1", "role": "researcher"}, 201),
    ("api-imports", "post"): Write("lead", status=202, files={"file": ("items.jsonl", PACKAGE)}),
    ("api-annotations", "post"): Write("ann2", lambda w: _label(w, "assignment_id"), 201, args=lambda w: {}),
    ("api-skip", "post"): Write("ann2", status=204, args=lambda w: {"assignment_id": w.ids["assignment_id"]}),
    ("api-annotation", "patch"): Write(
        "ann2",
        lambda w: {"more_hallucinated": "neither"},
        200,
        args=lambda w: {"annotation_id": w.ids["annotation_id"]},
        check=_edited,
    ),
    ("api-models", "post"): Write("lead", status=202),
    ("api-exports", "post"): Write("res", lambda w: {"format": "annotations"}, 202),
}


def _send(client: Client, method: str, url: str, write: Write, world: World, token: str | None, *, api: bool):
    """Send the row's submission as a browser would, with the token (in the header or the form) or without."""
    data = write.data(world)
    headers = {"X-CSRFToken": token} if token else {}
    if write.files:
        data |= {name: SimpleUploadedFile(filename, body) for name, (filename, body) in write.files.items()}
        return getattr(client, method)(url, data, headers=headers)
    if api:
        return getattr(client, method)(url, json.dumps(data), content_type="application/json", headers=headers)
    return getattr(client, method)(url, data | ({"csrfmiddlewaretoken": token} if token else {}))


def test_the_tables_list_every_address_that_takes_a_write(world):
    """Derived: an address takes a write when a write with a valid token answers anything but 405."""
    # Staff for the API (DRF refuses an anonymous caller before it looks at the method); anonymous for the pages,
    # whose method check comes first (a signed-in user's PUT to the login form is redirected, not refused).
    staff = get_user_model().objects.get(username="staff")
    clients = {True: signed_in("staff"), False: signed_in(None)}
    takes_writes = set()
    for route in routes():
        url = reverse(route.name, kwargs={name: world.ids[name] for name in route.ids})
        client, token = clients[route.is_api]
        for method in WRITE_METHODS:
            response = getattr(client, method)(url, "", content_type="application/json", HTTP_X_CSRFTOKEN=token)
            if response.status_code != 405:
                takes_writes.add((route.name, method))
            if route.is_api and "_auth_user_id" not in client.session:
                client.force_login(staff)
    takes_writes -= {("api-not-found", method) for method in WRITE_METHODS}
    listed = {(name, "post") for name in PAGE_WRITES} | set(API_WRITES)
    assert takes_writes == listed, f"missing rows: {takes_writes - listed}; rows for no write: {listed - takes_writes}"


@pytest.mark.parametrize("name", PAGE_WRITES)
def test_a_form_with_the_token_works(world, name):
    write = PAGE_WRITES[name]
    client, token = signed_in(write.username)
    url = reverse(name, kwargs=write.args(world))

    forged = _send(client, "post", url, write, world, None, api=False)
    assert _refused_for_csrf(forged)
    assert not write.check(world) or name in ("login", "logout", "instructions-preview", "label-skip", "model-page")
    response = _send(client, "post", url, write, world, token, api=False)

    assert response.status_code == write.status, response.content.decode()[:1000]
    assert write.check(world)


@pytest.mark.parametrize("name, method", API_WRITES, ids=[f"{m} {n}" for n, m in API_WRITES])
def test_a_session_write_to_the_api_with_the_token_works(world, name, method):
    write = API_WRITES[(name, method)]
    client, token = signed_in(write.username)
    url = reverse(name, kwargs=write.args(world))

    if name not in EXEMPT:
        assert _refused_for_csrf(_send(client, method, url, write, world, None, api=True))
    response = _send(client, method, url, write, world, token, api=True)

    assert response.status_code == write.status, response.content.decode()[:1000]
    assert write.check(world)


def test_an_admin_form_needs_the_token_too(world):
    get_user_model().objects.filter(username="staff").update(is_superuser=True)
    client, token = signed_in("staff")
    url = reverse("admin:auth_group_add")
    assert _refused_for_csrf(client.post(url, {"name": "forged"}))
    assert client.post(url, {"name": "with a token", "csrfmiddlewaretoken": token}).status_code == 302


def test_reverse_fills_every_named_address(world):
    """_named_urls raises NoReverseMatch for an address whose ids it cannot fill; none may be left out."""
    try:
        urls = _named_urls(world)
    except NoReverseMatch as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"an address cannot be filled: {exc}")
    assert {name for name, _ in urls} >= {route.name for route in routes()}
