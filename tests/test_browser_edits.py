"""Taking a label back in headless Chromium (issue 18): Backspace brings the last pair back filled in.

The browser fixture and helpers are shared (tests/conftest.py, tests/browser.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from annotate.models import Annotation, Campaign
from tests.browser import DESKTOP, sign_in, watch_problems
from tests.factories import make_pairs

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/dev/shots")  # where the lead reviews screenshots, beside the test's own tmp path


def test_backspace_brings_the_last_label_back_and_submitting_changes_it(live_server, browser, campaign, tmp_path):
    expect = sync_api.expect
    make_pairs(campaign, 3, texts=("Two red balls next to a blue box.", "Three red balls and a small dog."))
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page)
    sign_in(page, live_server.url, "ann1")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/label/")
    expect(page.locator(".btn--previous")).to_have_count(0)  # nothing to go back to yet

    # Label the first pair: left, strength 3 (E), Enter.
    for key in ("1", "e", "Enter"):
        page.keyboard.press(key)
    expect(page.locator(".counter__n")).to_have_text("1")
    waiting = page.locator("#label-panel").get_attribute("data-assignment")
    (annotation,) = Annotation.objects.all()

    # Backspace: the first pair is back, with the label as given, in screen terms.
    page.keyboard.press("Backspace")
    expect(page.locator("[data-editing]")).to_have_count(1)
    assert page.locator("#label-panel").get_attribute("data-assignment") == str(annotation.assignment_id)
    expect(page.locator('input[name="more_hallucinated"][value="left"]')).to_be_checked()
    expect(page.locator('input[name="strength"][value="3"]')).to_be_checked()
    expect(page.locator(".btn--skip")).to_have_count(0)

    # Change it: right, strength 1 (Q), a type (Z); the screenshot shows the label being changed.
    for key in ("2", "q", "z"):
        page.keyboard.press(key)
    # caret="initial": hiding the caret leaves style="" on the inputs, which htmx's next swap copies (CSP).
    page.screenshot(path=tmp_path / "label_edit.png", caret="initial")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "label_edit.png", SHOTS / "label_edit.png")
    page.keyboard.press("Enter")

    # Back on the pair that was waiting, still one label; the API shows the edit and both versions.
    expect(page.locator("[data-editing]")).to_have_count(0)
    expect(page.locator("#label-panel")).to_have_attribute("data-assignment", waiting)
    expect(page.locator(".counter__n")).to_have_text("1")
    body = page.request.get(f"{live_server.url}/api/v1/annotations/{annotation.pk}/").json()
    left, right = annotation.shown_left, "b" if annotation.shown_left == "a" else "a"
    assert [(v["number"], v["more_hallucinated"], v["strength"]) for v in body["versions"]] == [
        (1, left, 3),
        (2, right, 1),
    ]
    assert body["hallucination_types"] == ["object"] and Annotation.objects.count() == 1

    # Once the window is closed, Backspace says why and leaves the pair on screen as it was.
    Campaign.objects.filter(pk=campaign.pk).update(edit_window_minutes=0)
    page.keyboard.press("Backspace")
    expect(page.locator("#flash")).to_contain_text("edit window is 0 minutes")
    expect(page.locator("#label-panel")).to_have_attribute("data-assignment", waiting)
    page.screenshot(path=tmp_path / "label_edit_refused.png", caret="initial")
    shutil.copy(tmp_path / "label_edit_refused.png", SHOTS / "label_edit_refused.png")
    assert [problem for problem in problems if "409" not in problem] == []
    page.close()
