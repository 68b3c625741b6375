"""Script and HTML in user text are shown as text, never run (issue 7, item 3), in headless Chromium.

Every kind of text a person can put in front of another one carries a payload: the campaign's name,
instructions (Markdown) and strength labels, item prompts, answers, facts and external ids, prior-label
sources, a pause reason, an annotation's rationale, an import's file name and errors, a run's error and
question types, an export's error, a worker's name, and what comes back in error messages and the login
form's `next`. Each page that shows them is opened as the roles that see it, and each must:
- run none of it: `window.__xss` stays unset, no dialog opens, no element carries an event handler;
- show it: the payload's text is on the page, escaped (Markdown instructions are sanitized instead: their
  tags and `javascript:` links are dropped, their words kept).

The tabs bypass the Content-Security-Policy, so that escaping alone is what is tested: the policy would
otherwise block most of these payloads even if a template let them through (test_csp_browser.py tests the
policy). The first test shows the payloads do run when they reach the page unescaped.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model

from annotate import clock
from annotate.models import (
    Campaign,
    ExportSnapshot,
    ImportJob,
    Item,
    Membership,
    ModelRun,
    Pair,
    PriorLabel,
    Response,
    Worker,
)
from annotate.services.campaigns import campaign_update
from tests import factories
from tests.browser import DESKTOP, sign_in
from tests.test_stats import label

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=1">'
ATTRIBUTE = '"><svg onload="window.__xss=1">'
# 99 characters: it fits every field it is put in (a prior's source holds 100).
PAYLOAD = f"{SCRIPT}{IMG}{ATTRIBUTE}'"
SHORT = "<b onclick=window.__xss=1>x</b>"  # strength labels hold 40 characters
MARKDOWN = f"Read **carefully**.\n\n{SCRIPT}\n\n{IMG}\n\n[click me](javascript:window.__xss=1)"
# What must never be in the page's DOM after a visit: a handler or a script: URL, from anywhere.
DANGEROUS = (
    "[onerror], [onload], [onclick], [onmouseover], a[href^='javascript:' i], iframe, object, embed, script:not([src])"
)


@pytest.fixture
def hostile(campaign, make_user):
    """The demo campaign with a payload in every text a person writes, and something of each kind to show it."""
    campaign_update(
        campaign=campaign,
        name=PAYLOAD,
        instructions=MARKDOWN,
        show_facts=True,
        strength_scale=2,
        strength_labels=[SHORT, "strong"],
    )
    pairs = factories.make_pairs(
        campaign, 3, prompt=PAYLOAD, texts=(PAYLOAD, PAYLOAD + " (b)"), facts={PAYLOAD[:60]: PAYLOAD}
    )
    for index, pair in enumerate(pairs):
        Item.objects.filter(pk=pair.item_id).update(external_id=f"{index}{PAYLOAD}")
        PriorLabel.objects.create(pair=pair, more_hallucinated="a", strength=2, source=PAYLOAD)
        label(pair, "ann2", "a", 1)
    Response.objects.filter(item__campaign=campaign, external_id="r0").update(model=PAYLOAD)
    # Disagreement on every pair, and a reason for the surfaced page.
    make_user("ann3")
    Membership.objects.create(campaign=campaign, user=get_user_model().objects.get(username="ann3"), role="annotator")
    for pair in pairs:
        label(pair, "ann3", "b", 2)
    # Surfaced, and still wanting labels, so ann1 is handed one.
    Pair.objects.filter(campaign=campaign).update(surfaced=["disagreement", "uncertain"], needed_labels=5)
    Membership.objects.filter(campaign=campaign, user__username="ann2").update(
        paused_at=clock.now(), paused_reason=PAYLOAD
    )
    lead = campaign.created_by
    ImportJob.objects.create(
        campaign=campaign,
        filename=f"{PAYLOAD[:-1]}.zip",
        status="failed",
        created_by=lead,
        errors=[{"line": 3, "reason": f"external_id {PAYLOAD!r} is already used"}],
    )
    run = ModelRun.objects.create(
        campaign=campaign,
        trigger="lead",
        status="succeeded",
        requested_by=lead,
        finished_at=clock.now(),
        metrics={"labels": {"accuracy": 0.7, "n": 10, "accuracy_by_qtype": {PAYLOAD: {"accuracy": 0.5, "n": 4}}}},
    )
    Campaign.objects.filter(pk=campaign.pk).update(active_model=run)
    ModelRun.objects.create(
        campaign=campaign, trigger="labels", status="failed", error=PAYLOAD, finished_at=clock.now()
    )
    ExportSnapshot.objects.create(campaign=campaign, format="reward", status="failed", error=PAYLOAD, created_by=lead)
    now = clock.now()
    Worker.objects.create(hostname=PAYLOAD, queues=[PAYLOAD[:30]], device="cpu", started_at=now, seen_at=now)
    return campaign


class Tab:
    """A browser tab that ignores the CSP and records dialogs, so only the page's own escaping protects it."""

    def __init__(self, browser, base_url: str, username: str | None) -> None:
        self.context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
        self.page = self.context.new_page()
        self.base_url = base_url
        self.dialogs: list[str] = []
        self.page.on("dialog", self._on_dialog)
        if username:
            sign_in(self.page, base_url, username)

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def visit(self, path: str, *, shows: tuple[str, ...] = (PAYLOAD,)) -> None:
        """Open a page, then check nothing ran and the text shows.

        `goto` returns after the window's load event, which waits for every image to load or fail: an image's
        onerror and an SVG's onload have run by then.
        """
        self.page.goto(self.base_url + path, wait_until="load")
        self.assert_nothing_ran(path)
        text = self.page.locator("body").inner_text()
        for expected in shows:
            assert expected in text, f"{path}: {expected!r} is not shown as text"

    def assert_nothing_ran(self, where: str) -> None:
        assert self.page.evaluate("window.__xss") is None, f"{where}: a payload ran"
        assert self.dialogs == [], f"{where}: a dialog opened: {self.dialogs}"
        dangerous = self.page.evaluate(f"[...document.querySelectorAll({DANGEROUS!r})].map(e => e.outerHTML)")
        assert dangerous == [], f"{where}: {dangerous}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab_as(live_server, browser):
    opened: list[Tab] = []

    def open_tab(username: str | None) -> Tab:
        tab = Tab(browser, live_server.url, username)
        opened.append(tab)
        return tab

    yield open_tab
    for tab in opened:
        tab.close()


def test_the_payloads_run_when_they_reach_a_page_unescaped(tab_as):
    """The check can fail: put raw into a page, each payload sets window.__xss (or leaves a handler)."""
    tab = tab_as(None)
    for payload in (IMG, ATTRIBUTE.removeprefix('">'), f"<p>{SCRIPT}</p>"):
        tab.page.goto("about:blank")
        tab.page.set_content(payload)
        tab.page.wait_for_function("window.__xss === 1", timeout=5_000)
    tab.page.evaluate("delete window.__xss")
    tab.page.set_content(SHORT)
    with pytest.raises(AssertionError, match="onclick"):
        tab.assert_nothing_ran("raw")


def test_an_annotator_sees_the_payloads_as_text(hostile, tab_as):
    expect, c = sync_api.expect, hostile.pk
    tab = tab_as("ann1")
    tab.visit("/", shows=(PAYLOAD,))
    tab.visit(f"/campaigns/{c}/label/", shows=(PAYLOAD, PAYLOAD + " (b)", PAYLOAD[:60], SHORT, "Read carefully."))
    page = tab.page
    # The instructions' Markdown is sanitized: the script and image are gone, the link has no javascript: URL.
    instructions = page.locator(".instructions__body")
    expect(instructions.locator("strong")).to_have_text("carefully")
    expect(instructions.get_by_text("click me")).to_be_visible()
    assert instructions.locator("img, script, a[href]").count() == 0

    # The rationale comes back in its box as typed when the label is refused (no side picked). label.js drops
    # a submit with nothing picked in the first 300 ms of a pair (a double press), so the test waits that out.
    page.wait_for_timeout(400)
    page.locator("#rationale").fill(PAYLOAD)
    page.locator("#rationale").press("Control+Enter")
    expect(page.locator("#label-panel .alert--error")).to_be_visible()
    assert page.locator("#rationale").input_value() == PAYLOAD
    tab.assert_nothing_ran("the refused label")

    # With a side picked it is saved; the next pair's panel swaps in and nothing of it ran either.
    page.keyboard.press("Escape")
    for key in ("1", "q", "Enter"):
        page.keyboard.press(key)
    expect(page.locator(".counter__n")).to_have_text("1")
    tab.assert_nothing_ran("the next pair")
    assert hostile.pairs.filter(annotations__rationale=PAYLOAD).exists()

    # The "?" overlay reads the controls' labels (a strength word holds SHORT) and shows them as text.
    page.keyboard.press("?")
    expect(page.get_by_role("dialog").get_by_text(SHORT)).to_be_visible()
    tab.assert_nothing_ran("the keys overlay")
    page.keyboard.press("Escape")

    # My work shows the label just given, its prompt, answers and rationale, as text.
    tab.visit(f"/campaigns/{c}/my-work/", shows=(PAYLOAD, PAYLOAD + " (b)", SHORT))


def test_a_paused_annotator_sees_the_reason_as_text(hostile, tab_as):
    tab = tab_as("ann2")
    tab.visit(f"/campaigns/{hostile.pk}/label/")
    tab.visit(f"/campaigns/{hostile.pk}/my-work/")  # a pause stops new pairs, not the look back at one's labels


def test_a_lead_sees_the_payloads_as_text_on_every_page(hostile, tab_as):
    expect, c = sync_api.expect, hostile.pk
    tab = tab_as("lead")
    for path, shows in (
        ("/", (PAYLOAD,)),
        (f"/campaigns/{c}/members/", (PAYLOAD,)),
        (f"/campaigns/{c}/import/", (PAYLOAD[:-1] + ".zip", f"external_id {PAYLOAD!r}")),
        (f"/campaigns/{c}/model/", (PAYLOAD,)),
        (f"/campaigns/{c}/surfaced/", (PAYLOAD, f"0{PAYLOAD}")),
        (f"/campaigns/{c}/surfaced/?reason={quote(PAYLOAD)}", (f"got {PAYLOAD!r}",)),
        (f"/campaigns/{c}/dashboard/", (PAYLOAD, f"0{PAYLOAD}")),
        (f"/campaigns/{c}/exports/", (PAYLOAD,)),
        (f"/campaigns/{c}/settings/", ("Read carefully.",)),
    ):
        tab.visit(path, shows=shows)
    page = tab.page
    assert page.locator("#id_name").input_value() == PAYLOAD
    assert page.locator("#id_instructions").input_value() == MARKDOWN

    # The live preview renders what is typed through the same sanitizer.
    page.fill("#id_instructions", f"{MARKDOWN}\n\n{ATTRIBUTE} again")
    expect(page.locator("#instructions-preview")).to_contain_text("again")
    tab.assert_nothing_ran("the instructions preview")

    # An error message that repeats what was typed shows it as text.
    tab.visit(f"/campaigns/{c}/members/")
    page.fill("#id_username", PAYLOAD[:150])
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#members-panel .field__error, #members-panel .alert--error").first).to_be_visible()
    tab.assert_nothing_ran("the refused invitation")


def test_a_researcher_sees_the_payloads_as_text(hostile, tab_as):
    c = hostile.pk
    tab = tab_as("res")
    for path in ("/", f"/campaigns/{c}/model/", f"/campaigns/{c}/surfaced/", f"/campaigns/{c}/dashboard/"):
        tab.visit(path)
    tab.visit(f"/campaigns/{c}/exports/")


def test_the_login_forms_next_is_not_a_way_in(hostile, tab_as):
    tab = tab_as(None)
    tab.visit(f"/login/?next={quote(ATTRIBUTE)}", shows=("Sign in",))
    assert tab.page.locator("input[name=next]").input_value() == ATTRIBUTE
    tab.visit(f"/login/?next={quote('javascript:window.__xss=1')}", shows=("Sign in",))
    tab.page.fill("#id_username", "ann1")
    tab.page.fill("#id_password", "pw-ann1")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url(f"{tab.base_url}/")
    tab.assert_nothing_ran("after signing in with a javascript: next")
