"""The labeling page in headless Chromium: sign in, label three pairs from the keyboard alone.

The browser fixture and helpers are shared (tests/conftest.py, tests/browser.py).
"""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from annotate.models import Annotation, Item, ModelRun, Pair, Response
from annotate.services.campaigns import campaign_update
from annotate.services.imports import import_package
from rewardlab.synthetic import SyntheticConfig, write_package
from tests.browser import ARTIFACTS, DESKTOP, PHONE, sign_in, watch_problems
from tests.conftest import wait_for
from tests.factories import image_stored

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


SCENES = [
    (
        "How many red balls are in the image?",
        "There are two red balls next to a blue box on a wooden table.",
        "There are three red balls on the table, and a small dog is sitting beside the blue box.",
        {"caption": "Two red balls and a blue box on a table.", "answer": "two"},
    ),
    (
        "What colour is the box?",
        "The box is blue.",
        "The box is green and has a white label on its front.",
        {"caption": "A blue box beside two red balls.", "answer": "blue"},
    ),
    (
        "Is anything on top of the box?",
        "No, the top of the box is empty.",
        "Yes, one red ball rests on top of the box.",
        {"caption": "Nothing is on the box.", "answer": "no"},
    ),
    (
        "Describe the scene.",
        "Two glossy red balls sit on a light table to the left of a blue box. The background is plain grey.",
        "Two red balls and a blue box are on a table. A window behind them shows a sunny garden with trees.",
        {"caption": "Two red balls left of a blue box, plain grey background.", "answer": ""},
    ),
]


def scene_png() -> bytes:
    """Draw a small still life (two red balls, a blue box) so the screenshots look like the real thing."""
    image = PILImage.new("RGB", (640, 420), (214, 217, 224))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 300, 640, 420), fill=(196, 160, 118))
    draw.rectangle((380, 160, 540, 320), fill=(46, 92, 196), outline=(30, 60, 140), width=4)
    for x in (110, 240):
        draw.ellipse((x, 220, x + 100, 320), fill=(205, 38, 38), outline=(140, 20, 20), width=3)
        draw.ellipse((x + 22, 238, x + 44, 258), fill=(240, 150, 150))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def scenes(campaign):
    """Four pairs with a real-looking image, facts shown and instructions set."""
    campaign_update(
        campaign=campaign,
        show_facts=True,
        instructions=(
            "Compare the two answers against the image. Pick the one that states more things that are not in "
            "the image, then say how much better the other answer is.\nUse the facts as a hint, not as the truth."
        ),
    )
    image = image_stored(scene_png())
    for index, (prompt, text_a, text_b, facts) in enumerate(SCENES):
        item = Item.objects.create(
            campaign=campaign, external_id=f"scene-{index:04d}", image=image, prompt=prompt, facts=facts
        )
        a = Response.objects.create(item=item, external_id="r0", text=text_a, model="m0")
        b = Response.objects.create(item=item, external_id="r1", text=text_b, model="m1")
        Pair.objects.create(campaign=campaign, item=item, a=a, b=b, needed_labels=campaign.overlap, priority=-index)
    return campaign


def test_annotator_labels_three_pairs_with_the_keyboard(live_server, browser, scenes):
    expect = sync_api.expect
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page)

    # Sign in through the form, then open the campaign's label page from the list.
    sign_in(page, live_server.url, "ann1")
    page.get_by_role("link", name="Label").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{scenes.pk}/label/")
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load from the npm package"
    expect(page.locator(".counter__n")).to_have_text("0")
    page.evaluate("window.__sameDocument = true")

    # 1) left, strength 3 (E), type count (C), Enter.
    for key in ("1", "e", "c", "Enter"):
        page.keyboard.press(key)
    expect(page.locator(".counter__n")).to_have_text("1")

    # 2) right, strength 1 (Q), a rationale typed after "/", Esc out of the box, Enter.
    for key in ("2", "q", "/"):
        page.keyboard.press(key)
    page.keyboard.type("The right answer adds a dog.")
    for key in ("Escape", "Enter"):
        page.keyboard.press(key)
    expect(page.locator(".counter__n")).to_have_text("2")

    # 3) neither, then Enter twice in a row: one label, and no error on the next pair.
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(page.locator(".counter__n")).to_have_text("3")
    page.wait_for_timeout(300)
    expect(page.locator("#label-panel .alert")).to_have_count(0)

    assert page.evaluate("window.__sameDocument") is True, "the pairs must swap in without a page load"
    assert problems == []
    annotations = list(Annotation.objects.order_by("id"))
    assert len(annotations) == 3
    assert all(annotation.duration_ms and annotation.duration_ms > 0 for annotation in annotations)
    assert [annotation.strength for annotation in annotations] == [3, 1, None]
    assert annotations[0].hallucination_types == ["count"]
    assert annotations[1].rationale == "The right answer adds a dog."
    assert annotations[2].more_hallucinated == "neither"
    for annotation, shown in zip(annotations[:2], ("left", "right"), strict=True):
        # What was picked on screen, turned back from canonical a/b with the side shown on the left.
        on_left = annotation.more_hallucinated == annotation.shown_left
        assert ("left" if on_left else "right") == shown

    # The fourth pair, half labeled, for the screenshots; nothing may overflow at phone width.
    for key in ("2", "w", "x"):
        page.keyboard.press(key)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "label_page.png")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=ARTIFACTS / "label_page_phone.png")
    page.screenshot(path=ARTIFACTS / "label_page_phone_full.png", full_page=True)

    # F zooms the image, Esc closes it.
    page.set_viewport_size(DESKTOP)
    page.keyboard.press("f")
    expect(page.locator(".item-image")).to_have_class("item-image is-zoomed")
    page.keyboard.press("Escape")
    expect(page.locator(".item-image")).to_have_class("item-image")
    page.close()


def test_lead_retrains_from_the_model_page_and_watches_the_run_finish(
    live_server, browser, campaign, start_worker, tmp_path
):
    """The whole loop as a lead sees it: a worker trains, the page polls the run, the new model shows."""
    expect = sync_api.expect
    start_worker()
    import_package(
        campaign=campaign, path=write_package(SyntheticConfig(n_items=60, seed=4, prior_noise=0.2), tmp_path / "p.zip")
    )
    first = wait_for(
        lambda: ModelRun.objects.filter(campaign=campaign, status="succeeded").first(),
        timeout=180,
        what="the first model",
    )

    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, live_server.url, "lead")
    page.get_by_role("link", name="Model").first.click()
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/model/")
    expect(page.locator(".model-card__run")).to_contain_text(f"Run {first.pk}")
    accuracy = page.locator('[data-metric="accuracy"]').inner_text()
    assert accuracy.endswith("%"), accuracy

    page.get_by_role("button", name="Retrain now").click()
    run = wait_for(lambda: ModelRun.objects.filter(campaign=campaign, trigger="lead").first(), what="the lead's run")
    live = page.locator(f"#model-run-{run.pk}")
    expect(live.locator("progress")).to_be_visible()
    expect(live).to_contain_text("Reload", timeout=180_000)  # the fragment polled until the run ended
    live.get_by_role("link", name="Reload").click()
    expect(page.locator(".model-card__run")).to_contain_text(f"Run {run.pk}")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "model_page.png", full_page=True)
    page.get_by_role("link", name="Surfaced pairs").first.click()
    expect(page.locator("table")).to_contain_text("scene-")
    page.close()
