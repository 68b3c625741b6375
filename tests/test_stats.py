"""Label quality through the app: gold pauses, consensus on the pairs, the stats endpoint and the dashboard.

Labels are written by hand here where a test needs exact sides shown, durations and days; the gold
tests go through the real submit path (API and label page), since the pause happens after the commit.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import krippendorff
import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.html import escape

from annotate import charts, clock
from annotate.models import Annotation, Assignment, Campaign, Membership, ModelRun, Pair
from annotate.selectors import pseudonym
from annotate.services.campaigns import membership_resume
from annotate.services.quality import consensus_refresh, gold_check
from annotate.stats import campaign_stats
from tests.factories import make_pairs
from workers import tasks

User = get_user_model()
HTMX = {"HX-Request": "true"}


def label(pair: Pair, username: str, choice: str, strength: int | None = None, *, left: str = "a", ms=None):
    """Save a finished label directly, with the side shown on the left and the duration a test wants."""
    user = User.objects.get(username=username)
    now = clock.now()
    assignment = Assignment.objects.create(
        pair=pair, annotator=user, left=left, status=Assignment.Status.DONE, leased_at=now, expires_at=now
    )
    return Annotation.objects.create(
        assignment=assignment,
        pair=pair,
        annotator=user,
        more_hallucinated=choice,
        strength=strength,
        shown_left=left,
        duration_ms=ms,
    )


def gold_rule(campaign: Campaign, *, minimum: float, answered: int) -> Campaign:
    """Set the campaign's gold threshold, and serve gold pairs first so tests know what comes next."""
    Campaign.objects.filter(pk=campaign.pk).update(
        min_gold_accuracy=minimum, gold_min_answered=answered, gold_share=1.0
    )
    campaign.refresh_from_db()
    return campaign


def membership(campaign: Campaign, username: str) -> Membership:
    return Membership.objects.get(campaign=campaign, user__username=username)


def stats_url(campaign: Campaign) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/stats/"


# Gold -----------------------------------------------------------------------------------------------------

GOLD_REASON = "gold accuracy 33% (1 of 3) is below this campaign's minimum of 70%"


@pytest.mark.django_db(transaction=True)
def test_annotator_failing_gold_is_paused_and_the_lead_sees_why(campaign, api_as, client):
    """Gold says b on every gold pair; ann1 answers b, a, a: judged at the third answer, 1 of 3 < 70%."""
    gold_rule(campaign, minimum=0.7, answered=3)
    gold_ids = {pair.pk for pair in make_pairs(campaign, 5, gold=3)[:3]}
    annotator = api_as("ann1")
    for answer, paused_after in (("b", False), ("a", False), ("a", True)):
        lease = annotator.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
        assert lease["pair"]["id"] in gold_ids
        body = {"assignment": lease["assignment"], "more_hallucinated": answer, "strength": 2}
        assert annotator.post("/api/v1/annotations/", body, format="json").status_code == 201
        assert (membership(campaign, "ann1").paused_at is not None) is paused_after
    assert membership(campaign, "ann1").paused_reason == GOLD_REASON

    refused = annotator.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")
    assert refused.status_code == 403
    assert refused.json()["detail"] == f"You are paused from this campaign: {GOLD_REASON}"

    client.force_login(User.objects.get(username="ann1"))
    page = client.get(reverse("label-page", args=[campaign.pk]))
    assert page.status_code == 403
    assert "Labeling is paused for you" in page.content.decode()
    assert escape(GOLD_REASON) in page.content.decode()

    client.force_login(User.objects.get(username="lead"))
    dashboard = client.get(reverse("dashboard-page", args=[campaign.pk])).content.decode()
    assert escape(GOLD_REASON) in dashboard and 'class="badge badge--paused"' in dashboard
    rows = {row["annotator"]: row for row in api_as("lead").get(stats_url(campaign)).json()["annotators"]}
    row = rows[pseudonym(user_id=User.objects.get(username="ann1").pk, campaign_id=campaign.pk)]
    assert row["paused"] is True and row["paused_reason"] == GOLD_REASON
    assert row["gold"] == {"answered": 3, "correct": 1, "accuracy": pytest.approx(1 / 3)}
    assert row["gold_failing"] is True


@pytest.mark.django_db(transaction=True)
def test_the_label_page_shows_the_pause_right_after_the_label_that_caused_it(campaign, client):
    """With htmx, the panel after the failing gold label is the paused notice, not another pair."""
    gold_rule(campaign, minimum=0.5, answered=1)
    make_pairs(campaign, 3, gold=2)
    client.force_login(User.objects.get(username="ann2"))
    url = reverse("label-page", args=[campaign.pk])
    assignment = client.get(url).context["assignment"]
    assert assignment.pair.is_gold
    response = client.post(
        reverse("label-submit", args=[campaign.pk]),
        {"assignment": assignment.pk, "more_hallucinated": "neither", "duration_ms": 900},
        headers=HTMX,
    )
    assert response.status_code == 403
    panel = response.content.decode()
    assert escape("gold accuracy 0% (0 of 1) is below this campaign's minimum of 50%") in panel
    assert panel.lstrip().startswith('<section id="label-panel"') and "<form" not in panel


def test_gold_is_judged_only_past_the_minimum_answers_and_below_the_minimum(campaign):
    gold = make_pairs(campaign, 4, gold=4)
    ann1, ann2 = User.objects.get(username="ann1"), User.objects.get(username="ann2")
    for pair in gold:
        label(pair, "ann1", "a", 1)  # all wrong: gold says b
    assert gold_check(campaign=campaign, annotator=ann1).accuracy == 0.0
    assert membership(campaign, "ann1").paused_at is None, "a minimum of 0 never pauses"

    gold_rule(campaign, minimum=0.5, answered=4)
    for pair, answer in zip(gold, "bba", strict=False):
        label(pair, "ann2", answer, 2)
    assert gold_check(campaign=campaign, annotator=ann2).answered == 3
    assert membership(campaign, "ann2").paused_at is None, "judged from the 4th gold answer on"
    label(gold[3], "ann2", "a", 2)
    score = gold_check(campaign=campaign, annotator=ann2)
    assert (score.correct, score.answered) == (2, 4)
    assert membership(campaign, "ann2").paused_at is None, "exactly at the minimum is not below it"

    gold_check(campaign=campaign, annotator=ann1)
    assert membership(campaign, "ann1").paused_reason == (
        "gold accuracy 0% (0 of 4) is below this campaign's minimum of 50%"
    )
    gold_rule(campaign, minimum=0.9, answered=4)
    gold_check(campaign=campaign, annotator=ann1)
    assert "50%" in membership(campaign, "ann1").paused_reason, "a paused annotator keeps the first reason"


def test_a_resumed_annotator_is_judged_on_new_gold_answers_only(campaign):
    gold = make_pairs(campaign, 6, gold=6)
    ann1 = User.objects.get(username="ann1")
    gold_rule(campaign, minimum=0.5, answered=2)
    for pair in gold[:2]:
        label(pair, "ann1", "a", 1)  # wrong
    gold_check(campaign=campaign, annotator=ann1)
    assert membership(campaign, "ann1").paused_at is not None
    membership_resume(membership=membership(campaign, "ann1"))
    label(gold[2], "ann1", "b", 2)  # right; the two old wrong answers no longer count
    assert gold_check(campaign=campaign, annotator=ann1).answered == 1
    assert membership(campaign, "ann1").paused_at is None
    label(gold[3], "ann1", "a", 2)
    label(gold[4], "ann1", "a", 2)
    gold_check(campaign=campaign, annotator=ann1)
    assert "1 of 3" in membership(campaign, "ann1").paused_reason


# Consensus on the pairs -----------------------------------------------------------------------------------


def test_consensus_refresh_writes_each_labeled_pair(campaign):
    agreed, tied, unlabeled = make_pairs(campaign, 3)
    label(agreed, "ann1", "b", 3)
    label(agreed, "ann2", "b", 2)
    label(tied, "ann1", "a", 1)
    label(tied, "ann2", "neither")

    assert consensus_refresh(campaign=campaign) == 2
    consensus = dict(Pair.objects.filter(campaign=campaign).values_list("id", "consensus"))
    assert consensus[agreed.pk] == {"more_hallucinated": "b", "strength": 2, "agreement": 1.0, "method": "majority"}
    assert consensus[tied.pk] == {"more_hallucinated": None, "strength": None, "agreement": 0.5, "method": "majority"}
    assert consensus[unlabeled.pk] == {}


def test_the_consensus_task_switches_to_dawid_skene_once_labels_allow(campaign):
    """25 pairs labeled by both annotators: past the rule's 20 shared pairs and 20 shared labels each."""
    pairs = make_pairs(campaign, 26)
    for index, pair in enumerate(pairs[:25]):
        label(pair, "ann1", "b", 3)
        label(pair, "ann2", "b" if index % 5 else "a", 2)
    label(pairs[25], "ann1", "a", 4)

    tasks.consensus_refresh(campaign.pk)  # the Celery task's body, run here
    consensus = dict(Pair.objects.filter(campaign=campaign).values_list("id", "consensus"))
    assert {consensus[pair.pk]["method"] for pair in pairs[:25]} == {"dawid-skene"}
    assert {consensus[pair.pk]["more_hallucinated"] for pair in pairs[:25]} == {"b"}
    assert consensus[pairs[25].pk] == {"more_hallucinated": "a", "strength": 4, "agreement": 1.0, "method": "majority"}


# The stats of a small hand-made campaign -------------------------------------------------------------------

DAY = datetime(2026, 11, 2, 10, tzinfo=UTC)


@pytest.fixture
def small(campaign):
    """Five pairs (the first gold, b more hallucinated); answer a is 14 characters, b 16.

        pair   ann1 (left shown, ms)      ann2 (left shown, ms)
        gold   b 3 (a, —)                 a 2 (a, 2000)
        p1     b 2 (a, 1000)              b 3 (b, 4000)
        p2     a 1 (a, 2000)              b 2 (a, —)
        p3     both (b, 3000)             both (a, 6000)
        p4     a 4 (b, 4000)

    ann1 labeled on Nov 2, ann2 on Nov 4; one succeeded model run.
    """
    gold, p1, p2, p3, p4 = make_pairs(campaign, 5, gold=1)
    rows = [
        (gold, "ann1", "b", 3, "a", None), (gold, "ann2", "a", 2, "a", 2000),
        (p1, "ann1", "b", 2, "a", 1000), (p1, "ann2", "b", 3, "b", 4000),
        (p2, "ann1", "a", 1, "a", 2000), (p2, "ann2", "b", 2, "a", None),
        (p3, "ann1", "both", None, "b", 3000), (p3, "ann2", "both", None, "a", 6000),
        (p4, "ann1", "a", 4, "b", 4000),
    ]  # fmt: skip
    for pair, username, choice, strength, left, ms in rows:
        label(pair, username, choice, strength, left=left, ms=ms)
    Annotation.objects.filter(annotator__username="ann1").update(created_at=DAY)
    Annotation.objects.filter(annotator__username="ann2").update(created_at=DAY + timedelta(days=2))
    ModelRun.objects.create(
        campaign=campaign,
        trigger="labels",
        status="succeeded",
        labels_at_request=9,
        finished_at=DAY + timedelta(days=2),
        metrics={"labels": {"accuracy": 0.8, "ece": 0.05, "text_only_accuracy": 0.6}, "gold": {"accuracy": 1.0}},
    )
    return {"campaign": campaign, "pairs": (gold, p1, p2, p3, p4)}


# The same labels as reliability data: rows ann1, ann2; columns gold, p1..p4.
CHOICE_CODES = [[1, 1, 0, 2, 0], [0, 1, 1, 2, np.nan]]  # a 0, b 1, both 2
SIGNED = [[3, 2, -1, 0, -4], [-2, 3, 2, 0, np.nan]]


def test_stats_of_a_small_campaign(small):
    campaign = small["campaign"]
    stats = campaign_stats(campaign)

    progress = stats.progress
    assert (progress.pairs, progress.complete, progress.open, progress.gold) == (5, 0, 5, 1)
    assert (progress.human_labels, progress.share_complete) == (9, 0.0)
    assert [(day.date.day, day.labels, day.cumulative) for day in progress.days] == [(2, 5, 5), (3, 0, 5), (4, 4, 9)]

    agreement = stats.agreement
    assert agreement.alpha_choice.value == pytest.approx(
        krippendorff.alpha(reliability_data=CHOICE_CODES, level_of_measurement="nominal")
    )
    assert agreement.alpha_strength.value == pytest.approx(
        krippendorff.alpha(reliability_data=SIGNED, level_of_measurement="ordinal")
    )
    assert (agreement.method, agreement.multi_labeled, agreement.disagreements) == ("majority", 4, 2)
    gold, _, p2, _, _ = small["pairs"]
    assert [row.pair_id for row in agreement.disagreed] == [gold.pk, p2.pk]
    assert agreement.disagreed[1].votes == {"a": 1, "b": 1, "both": 0, "neither": 0}

    ann1, ann2 = stats.annotators
    assert (ann1.username, ann1.labels, ann2.username, ann2.labels) == ("ann1", 5, "ann2", 4)
    assert (ann1.gold.correct, ann1.gold.answered, ann2.gold.correct, ann2.gold.answered) == (1, 1, 0, 1)
    assert (ann1.agreement, ann1.agreement_n, ann2.agreement) == (1.0, 2, 1.0)  # p1 (b) and p3 (both)
    assert (ann1.position.k, ann1.position.n, ann2.position.k, ann2.position.n) == (1, 4, 2, 3)
    assert (ann1.length.k, ann1.length.n, ann2.length.k, ann2.length.n) == (2, 4, 1, 3)  # a, the shorter, flagged
    assert (ann1.time.median_s, ann1.time.p90_s) == (2.5, pytest.approx(3.7))
    assert (ann2.time.median_s, ann2.time.p90_s) == (4.0, pytest.approx(5.6))
    assert not ann1.flagged and not ann2.flagged and not ann1.paused
    assert (stats.biases.position.k, stats.biases.position.n, stats.biases.length.share) == (3, 7, 3 / 7)
    assert stats.biases.time.median_s == 3.0

    assert [(r.run, r.human_labels, r.accuracy, r.ece, r.text_only_accuracy) for r in stats.rounds] == [
        (stats.rounds[0].run, 9, 0.8, 0.05, 0.6)
    ]


def test_the_stats_endpoint_returns_the_same_numbers(small, api_as):
    campaign = small["campaign"]
    stats = campaign_stats(campaign)
    data = api_as("res").get(stats_url(campaign)).json()

    assert data["progress"]["human_labels"] == 9 and data["progress"]["labels_per_day"][2] == {
        "date": "2026-11-04",
        "labels": 4,
        "cumulative": 9,
    }
    assert data["agreement"]["alpha_choice"] == {"value": stats.agreement.alpha_choice.value, "pairs": 4}
    assert data["agreement"]["method"] == "majority"
    assert data["agreement"]["disagreed"][1]["consensus"] == {
        "more_hallucinated": None,
        "strength": None,
        "agreement": 0.5,
        "method": "majority",
    }
    first = data["annotators"][0]
    ann1 = User.objects.get(username="ann1")
    assert first["annotator"] == pseudonym(user_id=ann1.pk, campaign_id=campaign.pk)
    assert "ann1" not in str(data), "the API names annotators only by pseudonym"
    assert first["position_bias"] == {"k": 1, "n": 4, "share": 0.25, "p_value": 0.625, "flagged": False}
    assert first["time"] == {"n": 4, "median_s": 2.5, "p90_s": pytest.approx(3.7)}
    assert data["biases"]["length_bias"]["share"] == pytest.approx(3 / 7)
    assert data["model_rounds"][0]["accuracy"] == 0.8 and data["model_rounds"][0]["text_only_accuracy"] == 0.6
    assert data["rules"] == {"min_gold_accuracy": 0.0, "gold_min_answered": 5, "flag_p_value": 0.01,
                             "flag_min_effect": 0.15}  # fmt: skip


@pytest.mark.parametrize(
    "username,status,names",
    [("lead", 200, True), ("staff", 200, True), ("res", 200, False), ("ann1", 403, False), ("otherlead", 404, False)],
)
def test_stats_name_annotators_for_leads_and_pseudonymise_them_for_researchers(
    small, api_as, make_user, username, status, names
):
    """API.md: annotators by pseudonym, and for leads also by username; others get no row at all."""
    make_user("staff", staff=True)
    campaign = small["campaign"]
    response = api_as(username).get(stats_url(campaign))
    assert response.status_code == status
    if status != 200:
        assert "ann1" not in response.content.decode() and "annotators" not in response.json()
        return
    users = User.objects.filter(username__in=("ann1", "ann2"))
    expected = {pseudonym(user_id=user.pk, campaign_id=campaign.pk): user.username for user in users}
    rows = response.json()["annotators"]
    assert {row["annotator"] for row in rows} == set(expected)
    if names:
        assert {row["annotator"]: row["username"] for row in rows} == expected
    else:
        assert all("username" not in row for row in rows) and "ann1" not in response.content.decode()


def test_stats_of_an_empty_campaign(campaign, api_as):
    data = api_as("lead").get(stats_url(campaign)).json()
    assert data["progress"]["labels_per_day"] == [] and data["agreement"]["alpha_choice"]["value"] is None
    assert [row["labels"] for row in data["annotators"]] == [0, 0]  # ann1 and ann2, members without labels


# The dashboard ----------------------------------------------------------------------------------------------


@pytest.fixture
def as_user(client):
    def login(username: str):
        client.force_login(User.objects.get(username=username))
        return client

    return login


@pytest.mark.parametrize(
    "username,status", [("lead", 200), ("res", 200), ("staff", 200), ("ann1", 403), ("otherlead", 404)]
)
def test_dashboard_is_for_leads_and_researchers(small, as_user, make_user, username, status):
    make_user("staff", staff=True)
    response = as_user(username).get(reverse("dashboard-page", args=[small["campaign"].pk]))
    assert response.status_code == status


def test_anonymous_is_sent_to_login_from_the_dashboard(campaign, client):
    response = client.get(reverse("dashboard-page", args=[campaign.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_leads_see_usernames_and_researchers_pseudonyms(small, as_user):
    campaign = small["campaign"]
    url = reverse("dashboard-page", args=[campaign.pk])
    ann1 = pseudonym(user_id=User.objects.get(username="ann1").pk, campaign_id=campaign.pk)
    lead_page = as_user("lead").get(url).content.decode()
    assert 'data-annotator="ann1"' in lead_page and ann1 not in lead_page
    researcher_page = as_user("res").get(url).content.decode()
    assert f'data-annotator="{ann1}"' in researcher_page and 'data-annotator="ann1"' not in researcher_page
    for chart in ("labels-over-time", "agreement", "position", "length", "time", "learning-curve"):
        assert f'class="chart chart--{chart}"' in lead_page


def biased_campaign(campaign: Campaign, n: int) -> None:
    """n pairs: ann1 flags whatever is shown left, ann2 picks at random."""
    rng = random.Random(5)
    for pair in make_pairs(campaign, n):
        left = rng.choice("ab")
        label(pair, "ann1", left, 2, left=left, ms=1500)
        label(pair, "ann2", rng.choice("ab"), 2, left=rng.choice("ab"), ms=3000)


def test_a_left_biased_annotator_is_flagged_on_the_dashboard(campaign, as_user):
    biased_campaign(campaign, 40)
    page = as_user("lead").get(reverse("dashboard-page", args=[campaign.pk])).content.decode()
    assert 'class="annotator-row is-flagged" data-annotator="ann1"' in page
    assert 'class="annotator-row" data-annotator="ann2"' in page
    assert page.count("chart__bar--flagged") == 1


def test_dashboard_and_stats_cost_a_fixed_number_of_queries(campaign, as_user, api_as, django_assert_max_num_queries):
    biased_campaign(campaign, 60)
    ModelRun.objects.create(campaign=campaign, trigger="labels", status="succeeded", metrics={})
    client = as_user("lead")
    url = reverse("dashboard-page", args=[campaign.pk])
    client.get(url)
    # session, user, campaign, role, labels, pair counts, days, disputed names, gold, members, runs, and one
    # per run that selectors.learning_curve's `.only()` leaves deferred (campaign_id)
    with django_assert_max_num_queries(12):
        assert client.get(url).status_code == 200
    api = api_as("res")
    api.get(stats_url(campaign))
    with django_assert_max_num_queries(11):
        assert api.get(stats_url(campaign)).status_code == 200


# Chart geometry -------------------------------------------------------------------------------------------


def test_category_bars_grow_from_the_axis_with_flags_and_reference_lines():
    chart = charts.category_bars_chart(
        key="position",
        title="Position bias",
        description="",
        x_label="Left answer flagged",
        rows=[charts.CategoryValue("ann1", 0.5, "half"), charts.CategoryValue("a" * 30, 1.0, "all", flagged=True),
              charts.CategoryValue("nobody", None, "")],
        references=[charts.Reference(0.5, "chance", "50%")],
    )  # fmt: skip
    box = chart.box
    assert box.height == box.top + box.bottom + 3 * charts.CATEGORY_ROW
    half, full = chart.bars
    assert half.x == full.x == box.x0
    assert half.width == pytest.approx((box.x1 - box.x0) / 2, abs=0.1) and full.width == box.x1 - box.x0
    assert (half.key, full.key) == ("", "flagged")
    assert [tick.label for tick in chart.y_ticks] == ["ann1", "a" * 15 + "…", "nobody"]
    assert chart.rules[0].x1 == chart.rules[0].x2 == half.x + half.width
    assert chart.vertical_grid and [tick.label for tick in chart.x_ticks] == ["0%", "25%", "50%", "75%", "100%"]


def test_labels_over_time_draws_a_bar_per_day_and_the_running_total():
    days = [
        type("Day", (), {"date": datetime(2026, 11, d).date(), "labels": n, "cumulative": c})
        for d, n, c in ((2, 5, 5), (3, 0, 5), (4, 4, 9))
    ]
    chart = charts.labels_over_time_chart(days)
    assert [bar.height for bar in chart.bars][1] == 0
    assert [tick.label for tick in chart.y_ticks][-1] == "10"  # the axis runs to a round number above 9
    line = chart.series[0]
    assert line.path.startswith("M") and len(line.markers) == 3
    assert line.markers[0].y == chart.bars[0].y, "on day one the bar and the running total are the same height"
    assert [tick.label for tick in chart.x_ticks] == ["Nov 2", "Nov 3", "Nov 4"]
