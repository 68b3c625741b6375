"""The quality dashboard in headless Chromium: a lead opens it from the campaign list; screenshots for review.

Six annotators, three of them with habits a lead should spot: ann1 flags whatever is shown on the
left, ann3 always prefers the longer answer, ann4 answers at random, fails gold and is paused.
The browser fixture and helpers are shared (tests/conftest.py, tests/browser.py).
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model

from annotate import clock
from annotate.models import Annotation, Campaign, ModelRun
from annotate.services.campaigns import membership_set
from annotate.services.quality import gold_check
from tests.browser import ARTIFACTS, DESKTOP, PHONE, sign_in, watch_problems
from tests.factories import make_pairs
from tests.test_stats import label

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DAYS = 6


def answer(habit: str, *, truth: str, left: str, rng: random.Random) -> str:
    """What an annotator with this habit says is more hallucinated (answer a is the shorter one)."""
    if habit == "left":
        return left if rng.random() < 0.9 else ("b" if left == "a" else "a")
    if habit == "longer":
        return "a"
    if habit == "careless":
        return rng.choice("ab")
    return truth if rng.random() < 0.9 else ("b" if truth == "a" else "a")


HABITS = {"ann1": "left", "ann2": "careful", "ann3": "longer", "ann4": "careless", "ann5": "careful", "ann6": "careful"}
GOLD_LABELERS = ("ann2", "ann4", "ann5", "ann6")


@pytest.fixture
def crowd(campaign, make_user):
    """60 pairs (8 gold), two or three labels each, spread over six days, and three model rounds."""
    for username in ("ann3", "ann4", "ann5", "ann6"):
        make_user(username)
        membership_set(campaign=campaign, username=username, role="annotator")
    Campaign.objects.filter(pk=campaign.pk).update(min_gold_accuracy=0.7, gold_min_answered=5)
    campaign.refresh_from_db()
    rng = random.Random(11)
    pairs = make_pairs(
        campaign,
        60,
        gold=8,
        texts=("Two red balls.", "Two red balls and a small dog beside a blue box on the table."),
    )
    start = clock.now() - timedelta(days=DAYS)
    for index, pair in enumerate(pairs):
        truth = pair.gold_answer or rng.choice("ab")
        # Gold pairs go to GOLD_LABELERS only, so the gold check pauses ann4 and no one else.
        for username in rng.sample(list(HABITS), 3) if index >= 8 else GOLD_LABELERS:
            left = rng.choice("ab")
            choice = answer(HABITS[username], truth=truth, left=left, rng=rng)
            seconds = rng.uniform(2, 5) if HABITS[username] == "longer" else rng.uniform(6, 25)
            created = label(pair, username, choice, rng.randint(1, 4), left=left, ms=int(seconds * 1000))
            Annotation.objects.filter(pk=created.pk).update(created_at=start + timedelta(days=index * DAYS // 60))
    for username in HABITS:
        gold_check(campaign=campaign, annotator=get_user_model().objects.get(username=username))
    for index, (accuracy, ece) in enumerate(((0.68, 0.09), (0.74, 0.06), (0.79, 0.04))):
        ModelRun.objects.create(
            campaign=campaign,
            trigger="labels",
            status="succeeded",
            labels_at_request=60 * (index + 1),
            finished_at=start + timedelta(days=2 * index + 1),
            metrics={"labels": {"accuracy": accuracy, "ece": ece, "text_only_accuracy": 0.55 + index * 0.02}},
        )
    return campaign


def test_lead_opens_the_dashboard_and_spots_the_biased_and_the_paused(live_server, browser, crowd):
    expect = sync_api.expect
    page = browser.new_page(viewport=DESKTOP)
    problems = watch_problems(page)

    sign_in(page, live_server.url, "lead")
    page.locator(f"#campaign-{crowd.pk}").get_by_role("link", name="Dashboard").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{crowd.pk}/dashboard/")

    rows = page.locator(".annotators-table tbody tr")
    expect(rows).to_have_count(len(HABITS))
    expect(page.locator('tr[data-annotator="ann1"]')).to_have_class("annotator-row is-flagged")
    expect(page.locator('tr[data-annotator="ann3"]')).to_have_class("annotator-row is-flagged")
    for careful in ("ann2", "ann5", "ann6"):
        expect(page.locator(f'tr[data-annotator="{careful}"]')).to_have_class("annotator-row")
    paused = page.locator('tr[data-annotator="ann4"]')
    expect(paused).to_contain_text("Paused")
    expect(paused).to_contain_text("is below this campaign's minimum of 70%")
    expect(page.locator(".chart--position .chart__bar--flagged")).to_have_count(1)
    expect(page.locator(".chart--length .chart__bar--flagged")).to_have_count(1)
    expect(page.locator(".chart--labels-over-time .chart__bar")).to_have_count(DAYS)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=ARTIFACTS / "dashboard_phone.png", full_page=True)
    assert problems == []
    page.close()
