"""The loop with real parts: PostgreSQL, Redis and Celery worker processes train, score and steer labeling."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate import clock
from annotate.models import Campaign, ModelRun, Pair, PairScore, Worker
from annotate.services.campaigns import campaign_update, membership_set
from annotate.services.jobs import CPU_QUEUE
from annotate.services.model_runs import model_run_request_by_lead
from annotate.services.quality import CONSENSUS_EVERY_SECONDS, consensus_refresh_start, consensus_send_stale
from rewardlab.synthetic import SyntheticConfig, write_package
from tests.conftest import wait_for
from tests.factories import make_pairs
from workers.app import app

RUN_TIMEOUT = 180  # seconds; a run of a few dozen pairs takes well under a minute on two cores


def _finished_run(campaign: Campaign, *, after: int = 0) -> ModelRun | None:
    """The first run newer than `after` that has reached an end (succeeded with priorities, or failed)."""
    run = campaign.model_runs.filter(pk__gt=after).order_by("id").first()
    if run is None or not run.is_terminal:
        return None
    return run


def _import_finished(client, job_id: int) -> dict | None:
    body = client.get(f"/api/v1/imports/{job_id}/").json()
    return body if body["status"] in {"succeeded", "failed"} else None


def _import(client, campaign: Campaign, tmp_path: Path, **config) -> None:
    package = write_package(SyntheticConfig(seed=11, prior_noise=0.2, **config), tmp_path / "scenes.zip")
    upload = SimpleUploadedFile("scenes.zip", package.read_bytes(), content_type="application/zip")
    job = client.post(f"/api/v1/campaigns/{campaign.pk}/imports/", {"file": upload}, format="multipart").json()
    done = wait_for(lambda: _import_finished(client, job["id"]), what="the import")
    assert done["status"] == "succeeded", done["errors"]


def _label(client, campaign: Campaign, choice: str = "b") -> int | None:
    """Lease the next pair for this client and label it; return the pair id, None when nothing is left."""
    lease = client.get(f"/api/v1/campaigns/{campaign.pk}/next-pair/")
    if lease.status_code == 204:
        return None
    body = lease.json()
    saved = client.post(
        "/api/v1/annotations/",
        {"assignment": body["assignment"], "more_hallucinated": choice, "strength": 3, "duration_ms": 900},
        format="json",
    )
    assert saved.status_code == 201, saved.content
    return body["pair"]["id"]


@pytest.mark.django_db(transaction=True)
def test_labels_retrain_the_model_and_next_pair_serves_a_surfaced_pair_first(
    campaign, api_as, worker_process, tmp_path
):
    campaign_update(campaign=campaign, retrain_every=6, overlap=2)
    lead = api_as("lead")
    _import(lead, campaign, tmp_path, n_items=40)
    first = wait_for(lambda: _finished_run(campaign), timeout=RUN_TIMEOUT, what="the run the import asked for")
    assert first.status == "succeeded" and first.trigger == "import", first.error

    annotator = api_as("ann1")
    labeled = [_label(annotator, campaign) for _ in range(6)]
    assert None not in labeled
    second = wait_for(lambda: _finished_run(campaign, after=first.pk), timeout=RUN_TIMEOUT, what="the label retrain")
    assert second.status == "succeeded" and second.trigger == "labels", second.error
    assert second.labels_at_request == 6 and second.metrics["samples"] == 40 + 6
    campaign.refresh_from_db()
    assert campaign.active_model_id == second.pk
    pairs = Pair.objects.filter(campaign=campaign)
    assert PairScore.objects.filter(run=second).count() == pairs.count() == 40

    surfaced = pairs.exclude(surfaced=[])
    assert 0 < surfaced.count() < pairs.count(), "20% flipped priors should surface some pairs, not all"
    membership_set(campaign=campaign, username="ann2", role="annotator")
    lease = api_as("ann2").get(f"/api/v1/campaigns/{campaign.pk}/next-pair/").json()
    served = Pair.objects.get(pk=lease["pair"]["id"])
    assert served.surfaced, "next-pair should serve a surfaced pair before any other"
    assert "score" not in lease["pair"] and "surfaced" not in lease["pair"]  # annotators never see the model


def _kill_during_training(process, run_id: int) -> None:
    wait_for(
        lambda: ModelRun.objects.get(pk=run_id).stage == "training",
        timeout=RUN_TIMEOUT,
        interval=0.05,
        what="the run to reach training",
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_training_leaves_the_old_model_until_its_run_queued_again_succeeds(
    campaign, api_as, start_worker, tmp_path
):
    campaign_update(campaign=campaign, retrain_every=1000)
    worker = start_worker("killed@%h")
    _import(api_as("lead"), campaign, tmp_path, n_items=300)
    old = wait_for(lambda: _finished_run(campaign), timeout=RUN_TIMEOUT, what="the first model")
    assert old.status == "succeeded", old.error
    old_scores = PairScore.objects.filter(run=old).count()

    doomed = model_run_request_by_lead(campaign=campaign, requested_by=campaign.created_by)
    _kill_during_training(worker, doomed.pk)

    annotator = api_as("ann1")
    assert _label(annotator, campaign) is not None  # annotation goes on without any worker
    campaign.refresh_from_db()
    assert campaign.active_model_id == old.pk and ModelRun.objects.get(pk=doomed.pk).status == "running"

    start_worker("killed@%h", env_extra={"REWARDLAB_WORKER_BEAT_SECONDS": "1"})  # restarted, as systemd would
    done = wait_for(lambda: _finished_run(campaign, after=old.pk), timeout=RUN_TIMEOUT, what="the run, taken again")
    assert done.pk == doomed.pk and done.status == "succeeded", done.error
    assert done.attempts == 2 and ModelRun.objects.filter(campaign=campaign).count() == 2
    campaign.refresh_from_db()
    assert campaign.active_model_id == done.pk
    assert PairScore.objects.filter(run=old).count() == old_scores, "the old model's scores were never touched"
    log = (tmp_path / "worker-1.log").read_text()
    assert f"Model run {doomed.pk} (running): The worker killed@" in log and "queued to run again" in log


@contextmanager
def broker_unreachable():
    """Point this process's Celery producer at a port nothing listens on; the worker keeps the real broker."""

    def reconnect(url: str | None) -> None:
        # kombu keeps one pool per broker URL; forgetting the app's pools makes it fetch the one for `url`.
        app.conf.broker_write_url = url
        app._pool = None
        app.amqp._producer_pool = None

    reconnect("redis://127.0.0.1:9/0")
    try:
        yield
    finally:
        reconnect(None)


@pytest.mark.django_db(transaction=True)
def test_labels_saved_while_the_broker_is_down_still_get_their_retrain(campaign, api_as, worker_process):
    campaign_update(campaign=campaign, retrain_every=1)
    make_pairs(campaign, 3)
    annotator = api_as("ann1")
    # A live worker also sends unsent runs on its beat (every 20 s); start right after its first one.
    wait_for(lambda: Worker.objects.exists(), what="the worker to say it is alive")
    with broker_unreachable():
        assert _label(annotator, campaign, "a") is not None  # saved, 201, although no task could be sent
    run = ModelRun.objects.get(campaign=campaign)
    assert run.status == "queued" and run.dispatched_at is None

    assert _label(annotator, campaign, "a") is not None  # the broker is back: this label sends the waiting run
    done = wait_for(lambda: _finished_run(campaign), timeout=RUN_TIMEOUT, what="the delayed retrain")
    assert done.pk == run.pk and done.status == "succeeded", done.error
    assert ModelRun.objects.filter(campaign=campaign).count() in {1, 2}  # the second label may ask for one more


def _consensus_messages(broker) -> int:
    """How many consensus refreshes wait in the broker's CPU queue."""
    queued = redis.Redis(port=broker.port).lrange(CPU_QUEUE, 0, -1)
    return sum(json.loads(raw)["headers"]["task"].endswith(".consensus_refresh") for raw in queued)


@pytest.mark.django_db(transaction=True)
def test_consensus_refreshes_are_shared_rate_bounded_and_the_beat_sends_what_labels_left_stale(
    campaign, api_as, private_broker, monkeypatch
):
    make_pairs(campaign, 5)
    annotator = api_as("ann1")
    _label(annotator, campaign, "a")
    _label(annotator, campaign, "b")  # no worker took the first request yet: this label joins it
    assert _consensus_messages(private_broker) == 1

    consensus_refresh_start(campaign=campaign)  # what the worker runs when it takes the message
    assert Pair.objects.filter(campaign=campaign).exclude(consensus={}).count() == 2
    _label(annotator, campaign, "a")  # that refresh has just started: nothing more is sent for a while
    assert _consensus_messages(private_broker) == 1 and consensus_send_stale() == 0

    later = clock.now() + timedelta(seconds=CONSENSUS_EVERY_SECONDS + 1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert consensus_send_stale() == 1, "a worker's beat sends the refresh the last label left owing"
    assert _consensus_messages(private_broker) == 2 and consensus_send_stale() == 0

    private_broker.stop()
    consensus_refresh_start(campaign=campaign)
    monkeypatch.setattr(clock, "now", lambda: later + timedelta(seconds=CONSENSUS_EVERY_SECONDS + 1))
    _label(annotator, campaign, "b")  # the broker refused the request: the claim is let go for the next label
    assert Campaign.objects.get(pk=campaign.pk).consensus_requested_at is None


@pytest.mark.django_db(transaction=True)
def test_labels_ask_a_worker_for_the_consensus_the_pair_api_then_serves(campaign, api_as, start_worker):
    # A fast beat: if the worker starts the first label's refresh before the second label, the beat sends its own.
    start_worker(env_extra={"REWARDLAB_WORKER_BEAT_SECONDS": "1"})
    make_pairs(campaign, 4)
    annotator = api_as("ann1")
    first = _label(annotator, campaign, "a")
    second = _label(annotator, campaign, "b")  # joins the first label's refresh if no worker started it yet

    def refreshed() -> dict | None:
        pairs = api_as("lead").get(f"/api/v1/campaigns/{campaign.pk}/pairs/").json()["results"]
        served = {row["id"]: row["consensus"] for row in pairs if row["id"] in (first, second)}
        return served if all(served.values()) else None

    served = wait_for(refreshed, timeout=30, what="the consensus refresh the labels asked for")
    assert served[first] == {"more_hallucinated": "a", "strength": 3, "agreement": 1.0, "method": "majority"}
    assert served[second]["more_hallucinated"] == "b"
