"""REST API v1 and the reward model: runs (list, start, detail), pair scores, surfacing filters, campaign settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import ModelRun, Pair, PairScore
from annotate.services.jobs import jobs_reap_lost
from tests.factories import make_pairs

METRICS = {"samples": 40, "labels": {"accuracy": 0.8, "ece": 0.05}, "gold": {"accuracy": 1.0}}
# Per pair, in creation order: the active model's entropy, the pair's priority and its surfacing reasons.
PLAN = [
    (0.95, 0.4, []),
    (0.30, 1.5, ["shortcut", "suspected_noise"]),
    (0.92, 1.9, ["uncertain"]),
    (0.10, 0.1, []),
]


def _succeeded_run(campaign, **fields) -> ModelRun:
    now = timezone.now()
    return ModelRun.objects.create(
        campaign=campaign,
        trigger=ModelRun.Trigger.LABELS,
        status=ModelRun.Status.SUCCEEDED,
        stage=ModelRun.Stage.DONE,
        progress=1.0,
        metrics=METRICS,
        started_at=now - timedelta(minutes=2),
        finished_at=now,
        **fields,
    )


def _score(run: ModelRun, pairs: list[Pair], entropies: list[float]) -> None:
    """Write the run's scores of `pairs` by hand, as a worker would after training."""
    PairScore.objects.bulk_create(
        PairScore(
            run=run,
            pair=pair,
            p_a_better=0.5 + entropy / 10,
            entropy=entropy,
            mutual_info=0.01,
            text_only_p_a_better=0.4,
            shortcut_score=0.6,
            noise_score=None if index else 0.2,
            weight=0.9,
        )
        for index, (pair, entropy) in enumerate(zip(pairs, entropies, strict=True))
    )


def _activate(campaign, run: ModelRun) -> None:
    campaign.active_model = run
    campaign.save(update_fields=["active_model"])


@pytest.fixture
def scored(campaign):
    """Four pairs scored by an older run and by the active one, with the priorities and reasons of PLAN."""
    pairs = make_pairs(campaign, len(PLAN))
    _score(_succeeded_run(campaign), pairs, [0.99] * len(pairs))  # an older model: none of its scores show
    active = _succeeded_run(campaign, artifact_sha256="f" * 64)
    _score(active, pairs, [entropy for entropy, _, _ in PLAN])
    for pair, (_, priority, reasons) in zip(pairs, PLAN, strict=True):
        Pair.objects.filter(pk=pair.pk).update(priority=priority, surfaced=reasons)
    _activate(campaign, active)
    return {"pairs": [pair.pk for pair in pairs], "run": active}


def _pair_ids(client, campaign, query: str = "") -> list[int]:
    response = client.get(f"/api/v1/campaigns/{campaign.pk}/pairs/?{query}")
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


@pytest.mark.django_db
def test_a_lead_starts_a_retrain_and_a_second_is_refused_while_it_is_queued(campaign, api_as):
    lead = api_as("lead")
    started = lead.post(f"/api/v1/campaigns/{campaign.pk}/models/")
    assert started.status_code == 202
    run = started.json()
    assert (run["status"], run["progress"], run["trigger"], run["requested_by"]) == ("queued", 0.0, "lead", "lead")
    assert run["is_active"] is False and run["campaign"] == campaign.pk

    again = lead.post(f"/api/v1/campaigns/{campaign.pk}/models/")
    assert again.status_code == 409
    assert again.json()["run"] == run["id"] and f"Run {run['id']}" in again.json()["detail"]
    assert ModelRun.objects.count() == 1, "a refused retrain creates nothing"
    listed = lead.get(f"/api/v1/campaigns/{campaign.pk}/models/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == run["id"]


@pytest.mark.django_db
def test_runs_are_listed_newest_first_and_a_lost_workers_run_shows_queued_again(campaign, api_as):
    old = _succeeded_run(campaign)
    _activate(campaign, old)
    lost = ModelRun.objects.create(campaign=campaign, trigger="labels", status="running", worker="gpu-1", attempts=1)
    lead = api_as("lead")
    rows = lead.get(f"/api/v1/campaigns/{campaign.pk}/models/").json()["results"]
    assert [row["id"] for row in rows] == [lost.pk, old.pk] and rows[0]["status"] == "running", "a read changes nothing"

    assert jobs_reap_lost() == 1  # a live worker's beat: nobody holds the run's lock
    rows = lead.get(f"/api/v1/campaigns/{campaign.pk}/models/").json()["results"]
    assert rows[0]["status"] == "queued" and "The worker gpu-1 was lost" in rows[0]["error"]
    assert [row["is_active"] for row in rows] == [False, True], "the campaign keeps its previous model"


@pytest.mark.django_db
def test_run_detail_shows_status_metrics_checksum_and_whether_it_is_active(campaign, api_as):
    older = _succeeded_run(campaign)
    run = _succeeded_run(campaign, artifact_sha256="a" * 64, worker="w@host", device="cuda:0", queue="gpu")
    _activate(campaign, run)
    body = api_as("res").get(f"/api/v1/models/{run.pk}/").json()
    assert body["status"] == "succeeded" and body["stage"] == "done" and body["progress"] == 1.0
    assert body["metrics"] == METRICS and body["artifact_sha256"] == "a" * 64
    assert (body["worker"], body["device"], body["queue"], body["trigger"]) == ("w@host", "cuda:0", "gpu", "labels")
    assert body["is_active"] is True and body["error"] == "" and body["requested_by"] is None
    assert {"labels_at_request", "created_at", "started_at", "finished_at"} <= set(body)
    assert api_as("lead").get(f"/api/v1/models/{older.pk}/").json()["is_active"] is False


@pytest.mark.django_db
def test_run_detail_is_403_for_annotators_and_404_for_strangers(campaign, api_as):
    run = _succeeded_run(campaign)
    assert api_as("ann1").get(f"/api/v1/models/{run.pk}/").status_code == 403
    assert api_as("otherlead").get(f"/api/v1/models/{run.pk}/").status_code == 404


@pytest.mark.django_db
def test_pairs_have_no_score_before_the_first_run(campaign, api_as):
    make_pairs(campaign, 2)
    rows = api_as("res").get(f"/api/v1/campaigns/{campaign.pk}/pairs/").json()["results"]
    assert [row["score"] for row in rows] == [None, None]
    assert _pair_ids(api_as("res"), campaign, "min_entropy=0") == [], "no model, no entropy to filter on"


@pytest.mark.django_db
def test_pairs_carry_the_active_models_scores(campaign, scored, api_as):
    first = api_as("lead").get(f"/api/v1/campaigns/{campaign.pk}/pairs/").json()["results"][0]
    assert first["score"] == {
        "p_a_better": pytest.approx(0.595),
        "entropy": 0.95,
        "mutual_info": 0.01,
        "text_only_p_a_better": 0.4,
        "shortcut_score": 0.6,
        "noise_score": 0.2,
        "weight": 0.9,
        "model": scored["run"].pk,
    }
    assert first["priority"] == 0.4 and first["surfaced"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query,expected",
    [
        ("surfaced=uncertain", [2]),
        ("surfaced=suspected_noise", [1]),
        ("surfaced=disagreement", []),
        ("surfaced=any", [1, 2]),
        ("min_entropy=0.9", [0, 2]),
        ("ordering=-priority", [2, 1, 0, 3]),
        ("surfaced=any&ordering=-priority", [2, 1]),
        ("min_entropy=0.9&ordering=-priority", [2, 0]),
    ],
)
def test_pair_filters_and_ordering(campaign, scored, api_as, query, expected):
    assert _pair_ids(api_as("res"), campaign, query) == [scored["pairs"][i] for i in expected]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query,field",
    [
        ("surfaced=uncertian", "surfaced"),
        ("min_entropy=1.5", "min_entropy"),
        ("min_entropy=-0.1", "min_entropy"),
        ("min_entropy=high", "min_entropy"),
        ("ordering=entropy", "ordering"),
        ("status=done", "status"),
    ],
)
def test_bad_pair_filters_are_400s_naming_the_filter(campaign, scored, api_as, query, field):
    response = api_as("res").get(f"/api/v1/campaigns/{campaign.pk}/pairs/?{query}")
    assert response.status_code == 400 and field in response.json()["fields"], response.json()


@pytest.mark.django_db
def test_the_pair_list_costs_a_fixed_number_of_queries(campaign, api_as, django_assert_max_num_queries):
    """Scores, labels, items and responses come in a few queries per page, never one per pair."""
    pairs = make_pairs(campaign, 40)
    run = _succeeded_run(campaign)
    _score(run, pairs, [0.5] * len(pairs))
    _activate(campaign, run)
    client = api_as("res")
    with django_assert_max_num_queries(6):  # token, campaign, count, page, labels, scores
        body = client.get(f"/api/v1/campaigns/{campaign.pk}/pairs/?page_size=100&min_entropy=0.1").json()
    assert body["count"] == 40 and all(row["score"]["model"] == run.pk for row in body["results"])


@pytest.mark.django_db
def test_annotators_never_see_scores_or_surfacing(campaign, scored, api_as):
    lease = api_as("ann1").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    assert set(lease["pair"]) == {"id", "item", "a", "b"}


@pytest.mark.django_db
def test_campaign_settings_show_the_active_model_and_take_surface_thresholds(campaign, scored, api_as):
    lead = api_as("lead")
    body = lead.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert body["active_model"] == scored["run"].pk and body["surface_thresholds"] == {}
    patched = lead.patch(f"/api/v1/campaigns/{campaign.pk}/", {"surface_thresholds": {"uncertain": 0.8}}, format="json")
    assert patched.status_code == 200 and patched.json()["surface_thresholds"] == {"uncertain": 0.8}


@pytest.mark.django_db
@pytest.mark.parametrize("thresholds", [{"bogus": 0.5}, {"uncertain": 2}, {"uncertain": "high"}])
def test_bad_surface_thresholds_are_400s_naming_the_setting(campaign, api_as, thresholds):
    url = f"/api/v1/campaigns/{campaign.pk}/"
    response = api_as("lead").patch(url, {"surface_thresholds": thresholds}, format="json")
    assert response.status_code == 400 and response.json()["fields"]["surface_thresholds"], response.json()
    campaign.refresh_from_db()
    assert campaign.surface_thresholds == {}


@pytest.mark.django_db
def test_the_schema_documents_runs_scores_and_pair_filters(client):
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/campaigns/{campaign_id}/models/"])
    assert "202" in paths["/api/v1/campaigns/{campaign_id}/models/"]["post"]["responses"]
    assert "get" in paths["/api/v1/models/{run_id}/"]
    filters = {param["name"] for param in paths["/api/v1/campaigns/{campaign_id}/pairs/"]["get"]["parameters"]}
    assert {"surfaced", "min_entropy", "status", "is_gold", "ordering"} <= filters
    components = schema["components"]["schemas"]
    assert "is_active" in components["ModelRunOutput"]["properties"]
    assert "model" in components["PairScoreOutput"]["properties"]


@pytest.mark.django_db
def test_only_staff_reopen_a_closed_campaign_over_the_api(campaign, api_as, make_user):
    lead = api_as("lead")
    assert lead.patch(f"/api/v1/campaigns/{campaign.pk}/", {"status": "closed"}, format="json").status_code == 200
    refused = lead.patch(f"/api/v1/campaigns/{campaign.pk}/", {"status": "active"}, format="json")
    assert refused.status_code in {400, 403, 409}, refused.content
    make_user("boss", staff=True)
    reopened = api_as("boss").patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"status": "active", "overlap": 3}, format="json"
    )
    assert reopened.status_code == 200 and reopened.json()["status"] == "active" and reopened.json()["overlap"] == 3
