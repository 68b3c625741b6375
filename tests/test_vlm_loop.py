"""The vision-language backend in the loop (issue 8): a run taken from the `gpu` queue by a worker with
REWARDLAB_VLM set fine-tunes the VLM, and its scores, metrics and activation flow as the default model's do.

The VLM is a tiny random Idefics3 written to a temporary directory (`rewardlab.vlm.tiny`).
"""

from __future__ import annotations

import pytest

from annotate import clock
from annotate.models import ModelRun, Pair, PairScore
from annotate.services.imports import import_package
from rewardlab.artifacts import artifact_read
from rewardlab.config import RunConfig
from rewardlab.synthetic import SyntheticConfig, write_package
from rewardlab.vlm.config import VLMRunConfig
from rewardlab.vlm.tiny import tiny_vlm_write
from tests.conftest import wait_for
from tests.factories import make_pairs
from workers.tasks import model_run_train
from workers.training import model_run_execute, scores_fill, training_config_for

ITEMS = 12
RUN_TIMEOUT = 180  # seconds, worker start included


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    return tiny_vlm_write(tmp_path_factory.mktemp("vlm") / "tiny-idefics3")


def _import(campaign, tmp_path) -> None:
    package = write_package(SyntheticConfig(n_items=ITEMS, seed=5, prior_noise=0.2), tmp_path / "p.zip")
    import_package(campaign=campaign, path=package)


def _assert_scored_and_active(run: ModelRun, campaign) -> None:
    run.refresh_from_db()
    campaign.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert campaign.active_model_id == run.pk
    assert run.metrics["backend"] == "vlm" and run.config["backend"] == "vlm"
    assert artifact_read(run.artifact_path).config["backend"] == "vlm"
    pairs = Pair.objects.filter(campaign=campaign)
    assert PairScore.objects.filter(run=run).count() == pairs.count() == ITEMS
    assert "labels" in run.metrics and "surfaced" in run.metrics
    assert pairs.filter(priority__gt=0).exists()


def test_a_run_from_the_gpu_queue_trains_the_vlm_and_becomes_the_active_model(
    campaign, tmp_path, settings, tiny_vlm_dir
):
    settings.REWARDLAB_VLM = str(tiny_vlm_dir)
    _import(campaign, tmp_path)
    run = ModelRun.objects.get(campaign=campaign)
    model_run_execute(run_id=run.pk, worker="gpu-host", queue="gpu")
    _assert_scored_and_active(run, campaign)
    assert run.metrics["vlm"]["model_dir"] == str(tiny_vlm_dir)

    make_pairs(campaign, 3)  # pairs imported since: the active VLM scores them from its artifact
    assert scores_fill(campaign_id=campaign.pk) == 3
    assert PairScore.objects.filter(run=run).count() == ITEMS + 3


def test_the_backend_follows_the_queue_and_the_setting(campaign, settings, tiny_vlm_dir):
    settings.REWARDLAB_VLM = str(tiny_vlm_dir)
    chosen = training_config_for(campaign, device="cpu", queue="gpu")
    assert isinstance(chosen, VLMRunConfig) and chosen.vlm.model_dir == str(tiny_vlm_dir)
    assert chosen.train.margins == (0.0, 0.3333, 0.6667, 1.0)  # the campaign's strengths, as for the heads
    assert isinstance(training_config_for(campaign, device="cpu", queue="cpu"), RunConfig)
    settings.REWARDLAB_VLM = ""
    assert isinstance(training_config_for(campaign, device="cpu", queue="gpu"), RunConfig)


@pytest.fixture
def vlm_env(monkeypatch, tiny_vlm_dir):
    """REWARDLAB_VLM in the environment of the worker processes started after this fixture."""
    monkeypatch.setenv("REWARDLAB_VLM", str(tiny_vlm_dir))


@pytest.mark.django_db(transaction=True)
def test_a_worker_picks_the_vlm_by_the_queue_the_message_came_from(vlm_env, start_worker, campaign, tmp_path):
    """The run row records no queue, so only the message's delivery on `gpu` can choose the VLM."""
    _import(campaign, tmp_path)  # its run goes to `cpu` (no GPU worker is seen); it is failed before any worker runs
    ModelRun.objects.filter(campaign=campaign).update(status="failed")
    # Sent (dispatched_at), so no worker beat sends it again to the queue training_queue() picks.
    run = ModelRun.objects.create(campaign=campaign, trigger="lead", dispatched_at=clock.now())
    start_worker()
    model_run_train.apply_async((run.pk,), queue="gpu")
    wait_for(lambda: _terminal(run), timeout=RUN_TIMEOUT, what="the VLM run")
    assert run.queue == ""
    _assert_scored_and_active(run, campaign)


def _terminal(run: ModelRun) -> bool:
    run.refresh_from_db()
    return run.status in (ModelRun.Status.SUCCEEDED, ModelRun.Status.FAILED)
