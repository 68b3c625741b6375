"""The lead's reward-model pages: the active model, its curves, the live run, retraining, surfaced pairs.

Runs and scores are written by hand here (a real run needs a worker; tests/test_model_runs.py trains
one), so each test states exactly the numbers the page must show.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape
from django_htmx.http import HTMX_STOP_POLLING

from annotate import charts, clock
from annotate.models import Annotation, Assignment, ModelRun, Pair, PairScore, PriorLabel, Worker
from annotate.services.quality import consensus_refresh
from annotate.views.surfaced import PER_PAGE
from tests import factories

HTMX = {"HX-Request": "true"}
User = get_user_model()


@pytest.fixture
def as_user(client):
    def login(username: str):
        client.force_login(User.objects.get(username=username))
        return client

    return login


# Builders -----------------------------------------------------------------------------------------

CALIBRATION = [
    {"lo": 0.5, "hi": 0.75, "n": 10, "confidence": 0.62, "accuracy": 0.6},
    {"lo": 0.75, "hi": 1.0, "n": 0, "confidence": None, "accuracy": None},
]


def metrics(accuracy, text_only=None, gold=None, **extra) -> dict:
    """Metrics shaped like rewardlab.pipeline.model_train's, with the numbers a test wants to see."""
    held_out = {
        "accuracy": accuracy,
        "n": 120,
        "ece": 0.0412,
        "log_loss": 0.5231,
        "text_only_accuracy": text_only,
        "calibration": CALIBRATION,
        "accuracy_by_qtype": {"existence": {"accuracy": 0.9, "n": 30}, "counting": {"accuracy": 0.55, "n": 20}},
    }
    result = {"labels": held_out, "samples": 150, "seconds": 12.34, **extra}
    if gold is not None:
        result["gold"] = {"accuracy": gold, "n": 8}
    return result


def make_run(campaign, *, status="succeeded", labels=0, metrics=None, **fields) -> ModelRun:
    finished = clock.now() if status in ("succeeded", "failed") else None
    return ModelRun.objects.create(
        campaign=campaign,
        status=status,
        trigger=fields.pop("trigger", ModelRun.Trigger.LABELS),
        labels_at_request=labels,
        metrics=metrics or {},
        finished_at=finished,
        **fields,
    )


def activate(campaign, run: ModelRun) -> None:
    campaign.active_model = run
    campaign.save(update_fields=["active_model"])


def label(pair: Pair, username: str, choice: str, strength: int | None = None) -> Annotation:
    """Save one human label on a pair by hand, as the annotation service would have."""
    user = User.objects.get(username=username)
    now = clock.now()
    assignment = Assignment.objects.create(
        pair=pair, annotator=user, left="a", status="done", leased_at=now, expires_at=now, finished_at=now
    )
    Pair.objects.filter(pk=pair.pk).update(labels_count=pair.annotations.count() + 1)
    return Annotation.objects.create(
        assignment=assignment, pair=pair, annotator=user, more_hallucinated=choice, strength=strength, shown_left="a"
    )


def score(run: ModelRun, pair: Pair, *, p: float, noise: float | None = None) -> PairScore:
    return PairScore.objects.create(
        run=run,
        pair=pair,
        p_a_better=p,
        entropy=0.97,
        mutual_info=0.01,
        text_only_p_a_better=0.5,
        shortcut_score=0.125,
        noise_score=noise,
        weight=1.0,
    )


def surface(pair: Pair, reasons: list[str], priority: float) -> None:
    Pair.objects.filter(pk=pair.pk).update(surfaced=reasons, priority=priority)


# The plot helpers ---------------------------------------------------------------------------------


def test_scale_maps_a_domain_onto_svg_units():
    assert charts.scale(0.5, (0.0, 1.0), (230.0, 12.0)) == 121.0
    assert charts.scale(150, (100, 200), (44.0, 466.0)) == 255.0
    assert charts.scale(7, (7, 7), (0.0, 10.0)) == 5.0, "a zero-width domain goes to the middle"


@pytest.mark.parametrize(
    ("hi", "ticks"),
    [(0, (0, 1)), (7, (0, 2, 4, 6, 8)), (200, (0, 50, 100, 150, 200)), (1234, (0, 500, 1000, 1500))],
)
def test_axis_ticks_are_whole_1_2_5_steps_covering_the_data(hi, ticks):
    assert charts.axis_ticks(hi) == ticks


def test_line_path_and_percent():
    assert charts.line_path([(44.0, 121.0), (255.0, 66.5)]) == "M44 121 L255 66.5"
    assert charts.line_path([]) == ""
    assert charts.percent(0.8134) == "81.3%"
    assert charts.percent(0.5, digits=0) == "50%"
    assert charts.percent(None) == charts.percent(float("nan")) == "—"


class Point:
    def __init__(self, run, human_labels, accuracy, text_only_accuracy=None, gold_accuracy=None):
        self.run, self.human_labels, self.accuracy = run, human_labels, accuracy
        self.text_only_accuracy, self.gold_accuracy = text_only_accuracy, gold_accuracy


def test_learning_curve_chart_places_each_run_and_skips_missing_values():
    chart = charts.learning_curve_chart([Point(1, 0, 0.5, 0.25), Point(2, 100, 0.75), Point(3, 200, None, 0.5)])
    by_key = {series.key: series for series in chart.series}

    # Default box: x from 52 to 466, y from 230 (0%) up to 12 (100%); x ticks 0..200 by 50.
    assert [tick.label for tick in chart.x_ticks] == ["0", "50", "100", "150", "200"]
    assert [(tick.position, tick.label) for tick in chart.y_ticks][::2] == [
        (230.0, "0%"),
        (121.0, "50%"),
        (12.0, "100%"),
    ]
    assert by_key["accuracy"].path == "M52 121 L259 66.5"
    assert [(m.x, m.y) for m in by_key["accuracy"].markers] == [(52.0, 121.0), (259.0, 66.5)]
    assert by_key["text-only"].path == "M52 175.5 L466 121"
    assert by_key["gold"].path == "" and by_key["gold"].markers == ()
    assert by_key["accuracy"].markers[1].title == "Run 2: held-out accuracy 75.0% at 100 human labels"
    assert not chart.is_empty


def test_learning_curve_chart_of_no_runs_is_empty():
    chart = charts.learning_curve_chart([])
    assert chart.is_empty and [tick.label for tick in chart.x_ticks] == ["0", "1"]


def test_reliability_chart_draws_a_bar_per_nonempty_bin_and_the_diagonal():
    chart = charts.reliability_chart(CALIBRATION)
    assert chart.diagonal == "M52 121 L466 12"
    (bar,) = chart.bars
    # The bin 0.5-0.75 spans x 52..259; 6% of its width is left empty on each side.
    assert (bar.x, bar.width) == (64.4, 182.2)
    assert (bar.y, bar.height) == (99.2, 130.8)
    assert "10 pairs" in bar.title and "accuracy 60.0%" in bar.title
    assert [tick.label for tick in chart.x_ticks] == ["50%", "75%", "100%"]


# Who may open what --------------------------------------------------------------------------------


def _urls(campaign) -> dict[str, str]:
    run = make_run(campaign, status="running", stage="training", progress=0.4)
    return {
        "model-page": reverse("model-page", args=[campaign.pk]),
        "surfaced-page": reverse("surfaced-page", args=[campaign.pk]),
        "model-run-status": reverse("model-run-status", args=[run.pk]),
    }


EXPECTED = {
    "model-page": "<h1>Reward model</h1>",
    "surfaced-page": "<h1>Surfaced pairs</h1>",
    "model-run-status": "Training",
}


@pytest.mark.parametrize("page", ["model-page", "surfaced-page", "model-run-status"])
@pytest.mark.parametrize(("username", "status"), [("lead", 200), ("res", 200), ("ann1", 403), ("otherlead", 404)])
def test_pages_are_for_the_campaigns_leads_and_researchers(as_user, campaign, page, username, status):
    url = _urls(campaign)[page]
    response = as_user(username).get(url, headers=HTMX if page == "model-run-status" else {})
    assert response.status_code == status
    if status == 200:
        assert EXPECTED[page] in response.content.decode()
    else:
        assert b"p(A better)" not in response.content and b"hx-trigger" not in response.content


@pytest.mark.parametrize("page", ["model-page", "surfaced-page", "model-run-status"])
def test_anonymous_is_sent_to_login(client, campaign, page):
    response = client.get(_urls(campaign)[page])
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_status_without_htmx_goes_to_the_model_page(as_user, campaign):
    response = as_user("res").get(_urls(campaign)["model-run-status"])
    assert response.status_code == 302
    assert response["Location"] == reverse("model-page", args=[campaign.pk])


def test_only_leads_get_the_retrain_button(as_user, campaign):
    url = reverse("model-page", args=[campaign.pk])
    lead_page = as_user("lead").get(url).content.decode()
    assert "Retrain now" in lead_page and 'id="retrain-form"' in lead_page
    research_page = as_user("res").get(url).content.decode()
    assert "Reward model" in research_page
    assert "Retrain now" not in research_page and 'id="retrain-form"' not in research_page

    response = as_user("res").post(url)
    assert response.status_code == 403
    assert not ModelRun.objects.exists()


def test_campaign_list_links_the_model_pages_for_leads_and_researchers(as_user, campaign):
    model_url = reverse("model-page", args=[campaign.pk])
    surfaced_url = reverse("surfaced-page", args=[campaign.pk])
    for username in ("lead", "res"):
        page = as_user(username).get(reverse("campaign-list")).content.decode()
        assert f'href="{model_url}">Model</a>' in page and f'href="{surfaced_url}">Surfaced pairs</a>' in page
    page = as_user("ann1").get(reverse("campaign-list")).content.decode()
    assert model_url not in page and surfaced_url not in page


# Retrain now --------------------------------------------------------------------------------------


def test_retrain_without_htmx_queues_one_run_and_refuses_a_second(as_user, campaign):
    client = as_user("lead")
    url = reverse("model-page", args=[campaign.pk])

    response = client.post(url)

    run = ModelRun.objects.get()
    assert (run.status, run.trigger, run.requested_by.username) == ("queued", "lead", "lead")
    assert response.status_code == 302 and response["Location"] == url
    page = client.get(url).content.decode()
    assert f'id="model-run-{run.pk}"' in page
    assert f'hx-get="{reverse("model-run-status", args=[run.pk])}"' in page
    assert "Waiting for a worker" in page

    second = client.post(url)
    assert second.status_code == 409
    assert b"<html" in second.content
    assert f"Run {run.pk} of this campaign is already queued" in second.content.decode()
    assert ModelRun.objects.count() == 1


def test_retrain_with_htmx_swaps_in_a_polling_run_and_shows_a_conflict_on_the_form(as_user, campaign):
    client = as_user("lead")
    url = reverse("model-page", args=[campaign.pk])

    response = client.post(url, headers=HTMX)

    run = ModelRun.objects.get()
    assert response.status_code == 202
    page = response.content.decode()
    assert "<html" not in page
    assert f'id="model-run-{run.pk}"' in page and 'hx-trigger="load delay:1s"' in page
    assert 'id="retrain-form"' in page and 'hx-swap-oob="true"' in page

    second = client.post(url, headers=HTMX)
    assert second.status_code == 409
    assert second["HX-Retarget"] == "#retrain-form" and second["HX-Reswap"] == "outerHTML"
    page = second.content.decode()
    assert page.lstrip().startswith('<form id="retrain-form"')
    assert "No new run was started" in page and f"Run {run.pk} of this campaign is already queued" in page
    assert ModelRun.objects.count() == 1


# The live run -------------------------------------------------------------------------------------


def test_status_fragment_polls_while_running_and_stops_once_terminal(as_user, campaign):
    run = make_run(campaign, status="running", stage="training", progress=0.4)
    client = as_user("lead")
    url = reverse("model-run-status", args=[run.pk])

    running = client.get(url, headers=HTMX)
    assert running.status_code == 200
    page = running.content.decode()
    assert f'hx-get="{url}" hx-trigger="load delay:1s" hx-swap="outerHTML"' in page
    assert 'value="0.400"' in page and '<span class="run-live__stage">Training</span> · 40%' in page

    ModelRun.objects.filter(pk=run.pk).update(status="succeeded", stage="done", progress=1.0)
    done = client.get(url, headers=HTMX)
    assert done.status_code == HTMX_STOP_POLLING
    page = done.content.decode()
    assert "hx-trigger" not in page
    assert f'<a href="{reverse("model-page", args=[campaign.pk])}">Reload</a> to see the new model' in page


def test_a_run_queued_again_after_its_worker_was_lost_says_so_and_keeps_polling(as_user, campaign):
    run = make_run(campaign, status="queued", stage="queued", error="The worker <gpu-1> was lost at 40%; queued again")
    response = as_user("lead").get(reverse("model-run-status", args=[run.pk]), headers=HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "hx-trigger" in page and "The worker &lt;gpu-1&gt; was lost at 40%; queued again" in page


def test_failed_run_shows_its_error_escaped(as_user, campaign):
    run = make_run(campaign, status="failed", error="CUDA <b>out of memory</b>")
    response = as_user("lead").get(reverse("model-run-status", args=[run.pk]), headers=HTMX)
    assert response.status_code == HTMX_STOP_POLLING
    page = response.content.decode()
    assert "the campaign keeps its previous model" in page
    assert "CUDA &lt;b&gt;out of memory&lt;/b&gt;" in page and "<b>out" not in page


def test_workers_online_are_listed(as_user, campaign):
    url = reverse("model-page", args=[campaign.pk])
    assert "No worker is online" in as_user("lead").get(url).content.decode()
    now = clock.now()
    Worker.objects.create(hostname="gpu-box@<lab>", queues=["gpu"], device="cuda:0", started_at=now, seen_at=now)
    Worker.objects.create(
        hostname="gone@old", queues=["cpu"], device="cpu", started_at=now, seen_at=now - timedelta(hours=1)
    )
    page = as_user("lead").get(url).content.decode()
    assert "No worker is online" not in page
    assert "gpu-box@&lt;lab&gt;" in page and "cuda:0" in page and "queues: gpu" in page
    assert "gone@old" not in page


# The active model and its plots -------------------------------------------------------------------


def test_no_model_yet(as_user, campaign):
    page = as_user("lead").get(reverse("model-page", args=[campaign.pk])).content.decode()
    assert "No model yet." in page
    assert "The curve starts with the first finished run" in page
    assert "<svg" not in page and "No runs yet." in page


def test_model_page_shows_the_active_model_and_plots_its_runs(as_user, campaign):
    make_run(campaign, labels=0, metrics=metrics(0.5, text_only=0.25))
    make_run(campaign, status="failed", labels=60, error="worker lost")
    make_run(campaign, labels=100, metrics=metrics(0.75, text_only=None, gold=0.5))
    surfaced = {"uncertain": 3, "shortcut": 1, "suspected_noise": 2, "disagreement": 0, "surfaced": 5, "reopened": 1}
    active = make_run(
        campaign, labels=200, metrics=metrics(0.8134, text_only=0.5, gold=0.875, surfaced=surfaced), trigger="lead"
    )
    activate(campaign, active)

    page = as_user("res").get(reverse("model-page", args=[campaign.pk])).content.decode()

    # The active model's card.
    assert f"<strong>Run {active.pk}</strong>" in page
    assert '<strong class="model-card__labels">200</strong> human labels' in page
    assert '<dd data-metric="accuracy">81.3%</dd>' in page
    assert '<dd data-metric="text-only">50.0%</dd>' in page
    assert '<dd data-metric="gold">87.5%</dd>' in page and "on 8 gold pairs" in page
    assert '<dd data-metric="ece">0.041</dd>' in page and '<dd data-metric="log-loss">0.523</dd>' in page
    assert re.search(r'<th scope="row">counting</th><td class="num">55.0%</td><td class="num">20</td>', page)
    assert page.index(">counting<") < page.index(">existence<"), "question types in name order"
    assert 'suspected noise</span> <strong class="count-chip__n">2</strong>' in page
    assert "<strong>5</strong> pairs surfaced, <strong>1</strong> complete pair reopened" in page

    # The learning curve: 3 succeeded runs at 0, 100 and 200 labels (x 52, 259, 466), the failed run left out.
    curve = page[page.index('<svg class="chart chart--learning-curve"') : page.index("</svg>")]
    assert '<title id="learning-curve-title">Learning curve</title>' in curve
    assert 'aria-labelledby="learning-curve-title learning-curve-desc"' in curve
    assert 'd="M52 121 L259 66.5 L466 52.7"' in curve  # held-out accuracy 50%, 75%, 81.34%
    assert 'd="M52 175.5 L466 121"' in curve  # text-only: the middle run has none
    assert 'd="M259 121 L466 39.2"' in curve  # gold: only the last two runs
    assert curve.count('<circle class="series__point"') == 3 + 2 + 2
    assert '<circle class="series__point" cx="259.0" cy="66.5" r="4"><title>Run' in curve
    assert ">Human labels</text>" in curve and ">100%</text>" in curve
    assert "Held-out accuracy" in page and "Gold accuracy" in page

    # The reliability diagram of the active model: one non-empty bin, and the data table behind it.
    reliability = page[page.index('<svg class="chart chart--reliability"') :]
    reliability = reliability[: reliability.index("</svg>")]
    assert reliability.count('<rect class="chart__bar"') == 1
    assert '<rect class="chart__bar" x="64.4" y="99.2" width="182.2" height="130.8">' in reliability
    assert '<path class="chart__diagonal" d="M52 121 L466 12"/>' in reliability
    assert (
        '<th scope="row">50%–75%</th><td class="num">10</td><td class="num">62.0%</td><td class="num">60.0%</td>'
        in page
    )

    # The run list, newest first, with the failed run's reason and each run's time.
    runs = page[page.index('id="runs-title"') :]
    ids = [int(match) for match in re.findall(r'<tr id="run-(\d+)"', runs)]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    assert "worker lost" in runs and "Requested by a lead" in runs and "12.3 s" in runs


def test_the_curve_has_no_script_or_outside_resource(as_user, campaign):
    activate(campaign, make_run(campaign, labels=10, metrics=metrics(0.6)))
    page = as_user("lead").get(reverse("model-page", args=[campaign.pk])).content.decode()
    assert "<svg" in page
    assert "cdn" not in page.lower() and "chart.js" not in page.lower()
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page)
    assert len(re.findall(r"<script", page)) == len(sources), "no inline script: the curve is drawn by the server"
    assert all(src.startswith("/static/") for src in sources), sources
    assert {src.rsplit("/", 1)[-1] for src in sources} <= {"htmx.min.js", "keys_help.js"}, sources


# Surfaced pairs -----------------------------------------------------------------------------------


@pytest.fixture
def surfaced_campaign(campaign):
    """Four pairs: three surfaced with scores from the active model, labels and a prior; one not surfaced."""
    pairs = factories.make_pairs(campaign, 4)
    run = make_run(campaign, labels=3, metrics=metrics(0.7))
    activate(campaign, run)
    surface(pairs[0], ["uncertain"], 1.9)
    surface(pairs[1], ["shortcut", "uncertain"], 1.5)
    surface(pairs[2], ["suspected_noise"], 1.7)
    score(run, pairs[0], p=0.83, noise=0.91)
    score(run, pairs[1], p=0.2)
    label(pairs[0], "ann1", "a", 3)
    label(pairs[0], "ann2", "a", 2)
    label(pairs[0], "res", "b", 1)
    PriorLabel.objects.create(pair=pairs[0], more_hallucinated="b", strength=3, source="rlaif-v")
    consensus_refresh(campaign=campaign)  # what the worker does once the labels are in
    return campaign, pairs


def row_of(page: str, pair: Pair) -> str:
    start = page.index(f'<tr id="pair-{pair.pk}">')
    return page[start : page.index("</tr>", start)]


def test_surfaced_pairs_show_model_scores_beside_human_labels(as_user, surfaced_campaign):
    campaign, pairs = surfaced_campaign
    page = as_user("lead").get(reverse("surfaced-page", args=[campaign.pk])).content.decode()

    assert "<strong>3</strong> pairs surfaced" in page
    order = [int(pk) for pk in re.findall(r'<tr id="pair-(\d+)">', page)]
    assert order == [pairs[0].pk, pairs[2].pk, pairs[1].pk], "highest priority first, the unsurfaced pair left out"

    row = row_of(page, pairs[0])
    assert "item-00000" in row and '<span class="badge reason reason--uncertain">uncertain</span>' in row
    assert '<dd data-score="p_a_better">0.83</dd>' in row and '<dd data-score="entropy">0.97</dd>' in row
    assert '<dd data-score="shortcut_score">0.12</dd>' in row and '<dd data-score="noise_score">0.91</dd>' in row
    assert "Model: <strong>B</strong> more hallucinated" in row
    assert (
        '<li class="vote" data-choice="a"><span class="vote__label">A</span> <span class="vote__n">2</span></li>' in row
    )
    assert (
        '<li class="vote" data-choice="b"><span class="vote__label">B</span> <span class="vote__n">1</span></li>' in row
    )
    assert '<li class="vote vote--zero" data-choice="neither">' in row
    assert "Consensus: <strong>A</strong> more hallucinated (2) · 67% agree" in row
    assert "model disagrees" in row
    assert '<span class="label-count">3/2</span>' in row
    assert 'Prior: <strong>B</strong> (3) <span class="muted">· rlaif-v</span>' in row

    row = row_of(page, pairs[1])
    assert '<dd data-score="noise_score">—</dd>' in row and "No human label yet" in row
    assert "Model: <strong>A</strong> more hallucinated" in row and "model disagrees" not in row
    row = row_of(page, pairs[2])
    assert '<dd data-score="p_a_better">—</dd>' in row and "Not scored yet" in row


@pytest.mark.parametrize(("reason", "expected"), [("shortcut", [1]), ("uncertain", [0, 1]), ("disagreement", [])])
def test_the_reason_filter_keeps_only_pairs_surfaced_for_it(as_user, surfaced_campaign, reason, expected):
    campaign, pairs = surfaced_campaign
    response = as_user("res").get(reverse("surfaced-page", args=[campaign.pk]), {"reason": reason})
    page = response.content.decode()
    shown = sorted(int(pk) for pk in re.findall(r'<tr id="pair-(\d+)">', page))
    assert shown == sorted(pairs[i].pk for i in expected)
    assert f'aria-current="page">{reason.capitalize()}</a>' in page
    if not expected:
        assert "Nothing surfaced as disagreement" in page


def test_the_filter_with_htmx_swaps_only_the_results(as_user, surfaced_campaign):
    campaign, pairs = surfaced_campaign
    response = as_user("lead").get(reverse("surfaced-page", args=[campaign.pk]), {"reason": "shortcut"}, headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    assert page.lstrip().startswith('<section id="surfaced-results"') and "<html" not in page
    assert 'hx-target="this" hx-swap="outerHTML" hx-push-url="true"' in page
    assert f'<tr id="pair-{pairs[1].pk}">' in page and f'<tr id="pair-{pairs[0].pk}">' not in page


def test_an_unknown_reason_is_refused(as_user, surfaced_campaign):
    campaign, _ = surfaced_campaign
    response = as_user("lead").get(reverse("surfaced-page", args=[campaign.pk]), {"reason": "<bogus>"})
    assert response.status_code == 400
    assert "Expected a reason among uncertain, shortcut, suspected_noise, disagreement" in response.content.decode()
    assert "<bogus>" not in response.content.decode()


def test_surfaced_pairs_are_paginated(as_user, campaign):
    pairs = factories.make_pairs(campaign, PER_PAGE + 2)
    Pair.objects.filter(pk__in=[pair.pk for pair in pairs]).update(surfaced=["uncertain"])
    url = reverse("surfaced-page", args=[campaign.pk])
    client = as_user("lead")

    first = client.get(url, {"reason": "uncertain"}).content.decode()
    assert first.count('<tr id="pair-') == PER_PAGE
    assert f'href="{url}?reason=uncertain&amp;page=2"' in first and "page 1 of 2" in first

    second = client.get(url, {"reason": "uncertain", "page": 2}).content.decode()
    assert second.count('<tr id="pair-') == 2 and "Previous" in second


def test_the_surfaced_page_costs_a_fixed_number_of_queries(as_user, campaign):
    pairs = factories.make_pairs(campaign, 15)
    run = make_run(campaign, labels=3, metrics=metrics(0.7))
    activate(campaign, run)
    client = as_user("lead")
    url = reverse("surfaced-page", args=[campaign.pk])

    def fill(batch: list[Pair]) -> None:
        for pair in batch:
            surface(pair, ["disagreement"], 0.5)
            score(run, pair, p=0.4, noise=0.2)
            label(pair, "ann1", "both")
            label(pair, "ann2", "a", 2)
            PriorLabel.objects.create(pair=pair, more_hallucinated="a", source="old")

    fill(pairs[:2])
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).content.decode().count('<tr id="pair-') == 2
    fill(pairs[2:])
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).content.decode().count('<tr id="pair-') == 15

    # session, user, campaign, count, page, then one prefetch each for labels, scores and priors.
    assert len(many) == len(few) <= 8, [query["sql"] for query in many.captured_queries]


def test_user_text_on_the_surfaced_page_is_escaped(as_user, campaign):
    long_text = "<img src=x onerror=alert(2)> " + "very long answer " * 20
    (pair,) = factories.make_pairs(campaign, 1, prompt="<script>alert(1)</script>", texts=(long_text, "fine"))
    surface(pair, ["uncertain"], 1.0)
    PriorLabel.objects.create(pair=pair, more_hallucinated="a", source="<i>src</i>")

    page = as_user("lead").get(reverse("surfaced-page", args=[campaign.pk])).content.decode()

    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<i>src</i>" not in page and "&lt;i&gt;src&lt;/i&gt;" in page
    # A long response is cut in the row, and whole behind a disclosure.
    assert '<details class="clip"><summary>&lt;img src=x' in page
    assert f'<p class="clip__full">{escape(long_text)}</p>' in page
