"""Marking hallucinated spans in headless Chromium: one by mouse, one by keyboard, on a pair shown b-left.

The browser fixture and helpers are shared (tests/conftest.py, tests/browser.py).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from annotate import clock
from annotate.models import Assignment, Item, Pair, Response
from tests.browser import DESKTOP, sign_in, watch_problems
from tests.factories import image_stored
from tests.test_browser import scene_png

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXT_A = "There are two red balls next to a blue box."
TEXT_B = "There are three red balls, and a <script>dog</script> sits by the box."
SHOTS = Path("/tmp/dev/shots")  # one screenshot for the lead's review


@pytest.fixture
def pair_b_left(campaign):
    """One pair, leased to ann1 with `b` on the left."""
    item = Item.objects.create(
        campaign=campaign, external_id="scene-0", image=image_stored(scene_png()), prompt="How many red balls?"
    )
    a = Response.objects.create(item=item, external_id="r0", text=TEXT_A, model="m0")
    b = Response.objects.create(item=item, external_id="r1", text=TEXT_B, model="m1")
    pair = Pair.objects.create(campaign=campaign, item=item, a=a, b=b, needed_labels=campaign.overlap)
    now = clock.now()
    annotator = get_user_model().objects.get(username="ann1")
    Assignment.objects.create(
        pair=pair, annotator=annotator, left="b", leased_at=now, expires_at=now + timedelta(hours=1)
    )
    return pair


def drag_over(page, first, last) -> None:
    """Select from the start of one word to the end of another with the mouse, as a person would."""
    start, end = first.bounding_box(), last.bounding_box()
    page.mouse.move(start["x"] + 1, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] - 1, end["y"] + end["height"] / 2, steps=5)
    page.mouse.up()


def test_an_annotator_marks_two_spans_and_the_api_returns_them_in_canonical_text(
    live_server, browser, campaign, pair_b_left, api_as, tmp_path
):
    expect = sync_api.expect
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page)
    sign_in(page, live_server.url, "ann1")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/label/")
    left = page.locator(".answer--left .answer__text")
    expect(left).to_have_attribute("data-response", "b")
    expect(left).to_contain_text("<script>dog</script>")  # shown as text, not run

    # 1) By mouse, in the left answer (b): "three red" (offsets 10..19 of b's own text).
    drag_over(page, left.locator('.w[data-start="10"]'), left.locator('.w[data-start="16"]'))
    expect(page.locator(".span-row")).to_have_count(1)
    expect(page.locator(".span-row").first.locator("[data-span-text]")).to_have_text("three red")
    page.locator(".span-row").first.locator("[data-span-type]").select_option("count")
    page.keyboard.press("Escape")  # out of the type box, as from the rationale box

    # 2) By keyboard, in the right answer (a): M cursor, down to the other answer, right twice to "two",
    #    M to start there, right to extend over "red", Enter to close: "two red" (a's 10..17).
    for key in ("m", "ArrowDown", "ArrowRight", "ArrowRight", "m", "ArrowRight"):
        page.keyboard.press(key)
    expect(page.locator(".answer--right .w.is-marking")).to_have_count(2)
    page.keyboard.press("Enter")
    expect(page.locator(".span-row")).to_have_count(2)
    expect(page.locator(".answer__text .w.is-marked")).to_have_count(4)
    page.screenshot(path=str(tmp_path / "spans-marked.png"), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "spans-marked.png", SHOTS / "spans-marked.png")

    # Left (b) more hallucinated, clear (E), submit: the next panel swaps in.
    for key in ("1", "e", "Enter"):
        page.keyboard.press(key)
    expect(page.locator(".counter__n")).to_have_text("1")
    page.screenshot(path=str(tmp_path / "spans-submitted.png"), full_page=True)
    assert problems == []

    body = api_as("lead").get(f"/api/v1/campaigns/{campaign.pk}/annotations/").json()
    (annotation,) = body["results"] if isinstance(body, dict) else body
    assert annotation["more_hallucinated"] == "b" and annotation["shown_left"] == "b"
    assert annotation["spans"] == [
        {"response": "b", "start": 10, "end": 19, "type": "count"},
        {"response": "a", "start": 10, "end": 17},
    ]
    assert (TEXT_B[10:19], TEXT_A[10:17]) == ("three red", "two red")
