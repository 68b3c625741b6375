"""A lead's campaign settings and members pages in headless Chromium, with screenshots for review.

The browser fixture and helpers are shared (tests/conftest.py, tests/browser.py).
"""

from __future__ import annotations

import pytest

from annotate.models import Campaign, Membership
from annotate.services.campaigns import campaign_update
from tests.browser import ARTIFACTS, DESKTOP, PHONE, sign_in, watch_problems

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INSTRUCTIONS = (
    "# How to judge\n"
    "Compare both answers **against the image**, not against each other.\n\n"
    "- Count objects one by one.\n"
    "- A wrong colour is an *attribute* hallucination.\n\n"
    "See the [labeling guide](https://example.org/guide)."
)


def _is_problem(message) -> bool:
    """A console error, except the browser's note on a refused form (422), which the test provokes."""
    return message.type == "error" and "status of 422" not in message.text


@pytest.fixture
def lead_page(live_server, browser, campaign):
    """A desktop tab signed in as the campaign's lead, failing the test on any page or console error."""
    campaign_update(campaign=campaign, instructions=INSTRUCTIONS)
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page, console=_is_problem)
    sign_in(page, live_server.url, "lead")
    yield page
    page.close()
    assert problems == []


def _no_overflow_on_a_phone(page) -> None:
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide at {PHONE['width']}px"
    page.set_viewport_size(DESKTOP)


def test_lead_edits_settings_with_a_live_preview_and_pauses_the_campaign(live_server, lead_page, campaign):
    expect, page = sync_api.expect, lead_page
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/settings/")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#instructions-preview h3")).to_have_text("How to judge")

    # The preview follows the typing; a refused value comes back on its field, then a valid one saves.
    page.fill("#id_instructions", INSTRUCTIONS + "\n\n**Skip** pairs whose image does not load.")
    expect(page.locator("#instructions-preview strong").last).to_have_text("Skip")
    page.fill("#id_gold_share", "1.5")
    page.fill("#id_weight_shortcut", "2")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#id_gold_share + .field__error")).to_contain_text("Expected a share between 0 and 1")
    page.fill("#id_gold_share", "0.1")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-form .alert--success")).to_have_text("Settings saved.")
    saved = Campaign.objects.get(pk=campaign.pk)
    assert (saved.gold_share, saved.priority_weights) == (0.1, {"shortcut": 2.0})
    assert saved.instructions.endswith("**Skip** pairs whose image does not load.")

    page.get_by_role("button", name="Pause labeling").click()
    expect(page.locator("#campaign-status .badge")).to_have_text("Paused")
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"
    assert page.evaluate("window.__sameDocument") is True, "saving and pausing swap fragments, no page load"

    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the status card is sticky: place it where a lead first sees it
    page.screenshot(path=ARTIFACTS / "campaign_settings.png", full_page=True)
    _no_overflow_on_a_phone(page)


def test_lead_invites_and_pauses_members(live_server, lead_page, campaign, make_user):
    expect, page = sync_api.expect, lead_page
    make_user("newbie")
    page.get_by_role("link", name="Members").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/members/")

    page.fill("#id_username", "newbie")
    page.select_option("#id_role", "annotator")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#members-panel .alert--success")).to_have_text("newbie is annotator.")
    ann2 = Membership.objects.get(campaign=campaign, user__username="ann2")
    row = page.locator(f"#member-{ann2.pk}")
    row.get_by_label("Why ann2 is paused").fill("Please reread the guide on counting")
    row.get_by_role("button", name="Pause").click()
    expect(page.locator(f"#member-{ann2.pk} .badge")).to_have_text("Paused")
    expect(page.locator(f"#member-{ann2.pk}")).to_contain_text("Please reread the guide on counting")
    assert Membership.objects.get(pk=ann2.pk).paused_reason == "Please reread the guide on counting"
    assert Membership.objects.get(campaign=campaign, user__username="newbie").role == "annotator"

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "campaign_members.png", full_page=True)
    _no_overflow_on_a_phone(page)
