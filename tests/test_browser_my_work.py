"""My work and the "?" keys overlay in headless Chromium (issue 18, item 3).

An annotator labels two pairs from the keyboard, opens the list of keys with "?" (keys do not reach the page
behind it; Esc closes it and gives the focus back), then opens My work from the labeling page and finds both
labels, newest first, as given. The browser fixture and helpers are shared (tests/conftest.py, tests/browser.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser import DESKTOP, sign_in, watch_problems
from tests.test_my_work import pairs_with_prompts

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/dev/shots")  # where the lead reviews screenshots, beside the test's own tmp path
# What the overlay must list for the labeling page: a row per control's data-key and the keys declared in markup,
# the span tool's (spans.js) and Previous's (edits) among them, though this file's code names none of them.
LABELING_KEYS = [
    ("1", "Left more hallucinated"),
    ("4", "Neither"),
    ("Q", "1 negligible"),
    ("Z", "object"),
    ("S", "Skip"),
    ("/", "Go to rationale"),
    ("Enter", "Submit the label"),
    ("F", "Zoom the image"),
    ("Backspace", "Previous"),
    ("M", "Mark a span"),
    ("\u2190", "Back"),
    ("Esc", "Cancel"),
    ("?", "Show or hide the keys"),
]


def screenshot(page, tmp_path: Path, name: str, **options) -> None:
    # caret="initial": hiding the caret leaves style="" on the inputs, which htmx's next swap copies (CSP).
    page.screenshot(path=tmp_path / name, caret="initial", **options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / name, SHOTS / name)


def test_label_two_pairs_see_the_keys_and_find_both_on_my_work(live_server, browser, campaign, tmp_path):
    expect = sync_api.expect
    pairs_with_prompts(campaign, ["How many red balls?", "What colour is the box?", "Is the dog asleep?"])
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page)
    sign_in(page, live_server.url, "ann1")
    page.get_by_role("link", name="Label").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/label/")

    # Two labels from the keyboard: left with strength 3 (E), then right with strength 1 (Q).
    prompts = []
    for keys, done in ((("1", "e", "Enter"), "1"), (("2", "q", "Enter"), "2")):
        prompts.append(page.locator(".prompt__text").inner_text())
        for key in keys:
            page.keyboard.press(key)
        expect(page.locator(".counter__n")).to_have_text(done)

    # "?" opens the list of every key on the page, with the focus in it.
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.activeElement.closest('[role=dialog]') !== null"), "the focus moved in"
    for key, what in LABELING_KEYS:
        row = dialog.locator(".keys-help__row", has=page.locator("dd", has_text=what))
        expect(row.first.locator("kbd").first).to_have_text(key)
    expect(dialog.get_by_text("Which answer is more hallucinated?")).to_be_visible()
    expect(dialog.locator(".keys-help__title", has_text="Hallucinated spans")).to_have_count(1)
    screenshot(page, tmp_path, "keys.png")

    # No key reaches the pair behind it; Esc closes it and gives the focus back.
    page.keyboard.press("1")
    expect(page.locator('input[name="more_hallucinated"]:checked')).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement === document.body || !document.activeElement.closest('dialog')")
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    page.keyboard.press("?")
    expect(dialog).to_be_hidden()

    # My work, from the labeling page: both labels, the newest first, as they were given.
    page.get_by_role("link", name="My work").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/my-work/")
    rows = page.locator(".work-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".work-row__prompt")).to_have_text(prompts[1])
    expect(rows.nth(0).locator("[data-answer]")).to_have_text("Right more hallucinated")
    expect(rows.nth(1).locator(".work-row__prompt")).to_have_text(prompts[0])
    expect(rows.nth(1).locator("[data-answer]")).to_have_text("Left more hallucinated")
    expect(page.locator('[data-summary="labels"]')).to_have_text("2")
    screenshot(page, tmp_path, "mywork.png", full_page=True)
    assert problems == []
    page.close()
