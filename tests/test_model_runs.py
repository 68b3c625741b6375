"""Model runs as services, in one process: request, train, score, switch the active model, surface pairs."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError

from annotate import clock
from annotate.exceptions import ConflictError
from annotate.models import Campaign, ModelRun, Pair, PairScore, Worker
from annotate.services.annotations import LabelInput, annotation_save
from annotate.services.assignments import assignment_next
from annotate.services.campaigns import campaign_update, membership_set
from annotate.services.imports import import_package
from annotate.services.jobs import training_queue
from annotate.services.model_runs import (
    model_run_request,
    model_run_request_by_lead,
    retrain_if_due,
    run_dir,
    runs_prune,
)
from rewardlab.data import Dataset, Item, Label
from rewardlab.data import Pair as DataPair
from rewardlab.image_sources import MemoryImages
from rewardlab.synthetic import SyntheticConfig, write_package
from tests.factories import make_pairs
from workers import training
from workers.training import TransientRunError, model_run_execute, prior_review, scores_fill


@pytest.fixture
def imported(campaign, tmp_path):
    package = write_package(SyntheticConfig(n_items=60, seed=5, prior_noise=0.2), tmp_path / "p.zip")
    import_package(campaign=campaign, path=package)
    return campaign


def test_an_import_with_priors_queues_one_run(imported):
    run = ModelRun.objects.get(campaign=imported)
    assert run.status == "queued" and run.trigger == "import"
    again, created = model_run_request(campaign=imported, trigger="lead")
    assert again == run and not created
    with pytest.raises(ConflictError):
        model_run_request_by_lead(campaign=imported, requested_by=imported.created_by)


def test_a_run_scores_every_pair_and_becomes_the_active_model(imported):
    run = ModelRun.objects.get(campaign=imported)
    model_run_execute(run_id=run.pk, worker="here")
    run.refresh_from_db()
    imported.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.stage == "done" and run.progress == 1.0
    assert imported.active_model == run
    assert PairScore.objects.filter(run=run).count() == Pair.objects.filter(campaign=imported).count() == 60
    assert len(run.artifact_sha256) == 64
    assert "labels" in run.metrics and "surfaced" in run.metrics
    assert Pair.objects.filter(campaign=imported).exclude(surfaced=[]).exists()


def _executed(campaign, trigger: str) -> ModelRun:
    run, _ = model_run_request(campaign=campaign, trigger=trigger)
    model_run_execute(run_id=run.pk, worker="here")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def test_a_labels_retrain_starts_from_the_active_model_and_a_leads_from_scratch(imported):
    first = ModelRun.objects.get(campaign=imported)
    model_run_execute(run_id=first.pk, worker="here")
    first.refresh_from_db()
    second = _executed(imported, "labels")
    assert first.metrics["warm_start"] is False and second.metrics["warm_start"] is True
    assert sum(map(len, second.metrics["history"].values())) < sum(map(len, first.metrics["history"].values()))
    assert _executed(imported, "lead").metrics["warm_start"] is False  # Retrain now: a fresh fit

    active = Campaign.objects.get(pk=imported.pk).active_model
    shutil.rmtree(run_dir(active))  # the active model's files are lost: the next retrain starts fresh, and succeeds
    assert _executed(imported, "labels").metrics["warm_start"] is False


def _succeeded_run(campaign, **fields) -> ModelRun:
    run = ModelRun.objects.create(campaign=campaign, trigger="lead", status="succeeded", stage="done", **fields)
    return run


def test_a_failing_run_keeps_the_previous_model_active(campaign):
    """A campaign with pairs but no labels of any kind cannot train: the run fails and says why."""
    make_pairs(campaign, 4)
    previous = _succeeded_run(campaign)
    Campaign.objects.filter(pk=campaign.pk).update(active_model=previous)
    run, _ = model_run_request(campaign=campaign, trigger="lead")
    with pytest.raises(ValueError, match="no 'all' labels"):
        model_run_execute(run_id=run.pk, worker="here")
    run.refresh_from_db()
    campaign.refresh_from_db()
    assert run.status == "failed" and "no 'all' labels" in run.error and run.finished_at
    assert campaign.active_model == previous


def test_a_run_that_is_no_longer_queued_is_left_alone(imported):
    run = ModelRun.objects.get(campaign=imported)
    ModelRun.objects.filter(pk=run.pk).update(status="failed")
    assert model_run_execute(run_id=run.pk, worker="here") is None
    assert not PairScore.objects.exists()


def test_old_runs_are_pruned_but_keep_their_metrics(campaign, settings):
    settings.REWARDLAB_KEEP_RUNS = 2
    pairs = make_pairs(campaign, 2)
    runs = [_succeeded_run(campaign, metrics={"labels": {"accuracy": 0.5 + i / 10}}) for i in range(4)]
    for run in runs:
        run_dir(run).mkdir(parents=True)
        PairScore.objects.bulk_create(
            PairScore(run=run, pair=pair, p_a_better=0.5, entropy=1, mutual_info=0, text_only_p_a_better=0.5,
                      shortcut_score=0.5, weight=1)
            for pair in pairs
        )  # fmt: skip
    Campaign.objects.filter(pk=campaign.pk).update(active_model=runs[0])
    campaign.refresh_from_db()
    assert runs_prune(campaign=campaign) == 1
    kept = {run.pk for run in runs if run_dir(run).is_dir()}
    assert kept == {runs[0].pk, runs[2].pk, runs[3].pk}  # the active one and the last two
    assert set(PairScore.objects.values_list("run_id", flat=True)) == kept
    assert ModelRun.objects.get(pk=runs[1].pk).metrics["labels"]["accuracy"] == 0.6


def test_labels_at_the_retrain_threshold_queue_a_run(campaign, make_user):
    campaign_update(campaign=campaign, retrain_every=2)
    make_pairs(campaign, 3)
    ann1 = get_user_model().objects.get(username="ann1")
    label = LabelInput(more_hallucinated="a", strength=2)
    for _ in range(2):
        lease = assignment_next(campaign=campaign, annotator=ann1)
        annotation_save(assignment_id=lease.assignment.pk, user_id=ann1.pk, label=label)
        retrain_if_due(campaign_id=campaign.pk)  # what the submit's on_commit hook calls
    run = ModelRun.objects.get(campaign=campaign)
    assert run.trigger == "labels" and run.labels_at_request == 2
    campaign.refresh_from_db()
    assert campaign.human_labels == campaign.labels_at_last_request == 2


@pytest.mark.parametrize(
    ("run_status", "sent_seconds_ago", "asks"),
    [(None, None, True), ("running", 1, False), ("queued", 1, False), ("queued", None, True), ("queued", 3600, True)],
)
def test_a_due_label_asks_for_a_retrain_only_when_no_run_is_on_its_way(
    campaign, django_capture_on_commit_callbacks, monkeypatch, run_status, sent_seconds_ago, asks
):
    """A run training, or one the broker got lately, is left alone; none, or one that never left, is asked for."""
    campaign_update(campaign=campaign, retrain_every=1)
    make_pairs(campaign, 1)
    if run_status:
        sent = None if sent_seconds_ago is None else clock.now() - timedelta(seconds=sent_seconds_ago)
        ModelRun.objects.create(campaign=campaign, trigger="lead", status=run_status, dispatched_at=sent)
    asked = []
    monkeypatch.setattr("annotate.services.annotations._retrain_if_due", asked.append)
    ann1 = get_user_model().objects.get(username="ann1")
    with django_capture_on_commit_callbacks(execute=True):
        lease = assignment_next(campaign=campaign, annotator=ann1)
        annotation_save(assignment_id=lease.assignment.pk, user_id=ann1.pk, label=LabelInput("a", strength=2))
    assert asked == ([campaign.pk] if asks else [])


def test_suspected_noise_is_shown_in_both_orders(campaign, make_user):
    (pair,) = make_pairs(campaign, 1)
    Pair.objects.filter(pk=pair.pk).update(surfaced=["suspected_noise"], needed_labels=4)
    lefts = []
    for n in range(4):
        user = make_user(f"re{n}")
        membership_set(campaign=campaign, username=user.username, role="annotator")
        lefts.append(assignment_next(campaign=campaign, annotator=user).assignment.left)
    assert sorted(lefts) == ["a", "a", "b", "b"]


def test_noise_in_prior_labels_ranks_high_on_noise_score(campaign, tmp_path):
    """DESIGN.md's DT2IT step, loosely: the flipped priors gather at the top of noise_score.

    bench/loop_latency.py reports the same measure on larger campaigns; here 300 scenes keep it quick.
    """
    package = write_package(SyntheticConfig(n_items=300, seed=21, prior_noise=0.2), tmp_path / "noisy.zip")
    import_package(campaign=campaign, path=package)
    run = ModelRun.objects.get(campaign=campaign)
    model_run_execute(run_id=run.pk, worker="here")
    rows = PairScore.objects.filter(run=run).values_list("noise_score", "pair__item__meta")
    ranked = sorted(rows, key=lambda row: -row[0])
    flipped = sum(meta["prior_flipped"] for _, meta in rows)
    top = sum(meta["prior_flipped"] for _, meta in ranked[: len(ranked) // 4])
    assert flipped > 30
    assert top / flipped >= 0.5


def _worker(hostname: str, device: str, queues: list[str], seen_seconds_ago: float = 0) -> Worker:
    seen = clock.now() - timedelta(seconds=seen_seconds_ago)
    return Worker.objects.create(hostname=hostname, device=device, queues=queues, started_at=seen, seen_at=seen)


@pytest.mark.django_db
def test_training_goes_to_gpu_only_while_a_gpu_worker_listens():
    assert training_queue() == "cpu"
    _worker("cpu-1", "cpu", ["cpu", "gpu"])
    assert training_queue() == "cpu"  # a CPU worker reading the gpu queue is no GPU
    _worker("gpu-gone", "cuda", ["gpu"], seen_seconds_ago=600)
    assert training_queue() == "cpu"
    _worker("gpu-1", "cuda", ["gpu"])
    assert training_queue() == "gpu"


@pytest.mark.django_db(
    transaction=True
)  # the worker code closes a connection that failed; a test transaction would go with it
def test_a_transient_database_error_puts_the_run_back_in_the_queue(imported, monkeypatch):
    run = ModelRun.objects.get(campaign=imported)

    def database_gone(campaign, **_):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(training, "campaign_dataset", database_gone)
    with pytest.raises(TransientRunError):
        model_run_execute(run_id=run.pk, worker="here")
    run.refresh_from_db()
    assert run.status == "queued" and "Retrying" in run.error
    with pytest.raises(OperationalError):
        model_run_execute(run_id=run.pk, worker="here", may_retry=False)
    run.refresh_from_db()
    assert run.status == "failed"


def test_pairs_imported_after_a_run_are_scored_by_the_active_model(imported, tmp_path):
    run = ModelRun.objects.get(campaign=imported)
    model_run_execute(run_id=run.pk, worker="here")
    more = write_package(SyntheticConfig(n_items=10, seed=77, id_prefix="more"), tmp_path / "more.zip")  # no priors
    import_package(campaign=imported, path=more)
    assert ModelRun.objects.filter(campaign=imported).count() == 1  # no priors, no retrain
    assert scores_fill(campaign_id=imported.pk) == 10
    assert PairScore.objects.filter(run=run).count() == Pair.objects.filter(campaign=imported).count() == 70
    assert scores_fill(campaign_id=imported.pk) == 0


def test_prior_review_counts_what_humans_confirmed_and_overruled():
    pairs = [DataPair(0, "r0", "x", "r1", "y") for _ in range(4)]
    labels = [
        Label(0, "b", 2, "prior"), Label(0, "b", 3, "human"),  # confirmed
        Label(1, "b", 2, "prior"), Label(1, "a", 3, "human"), Label(1, "a", 2, "human"),  # flipped
        Label(2, "a", 1, "prior"), Label(2, "a", 1, "human"), Label(2, "b", 1, "human"),  # a tie: undecided
        Label(3, "a", 1, "prior"),  # no human label yet
    ]  # fmt: skip
    dataset = Dataset([Item("i", "p", "k", {}, {})], pairs, labels, MemoryImages({}))
    assert prior_review(dataset) == {"reviewed": 3, "confirmed": 1, "flipped": 1}
