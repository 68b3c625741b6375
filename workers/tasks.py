"""Celery tasks: each takes ids, re-fetches rows and calls one annotate service (STYLE.md, habit 7).

Model work (train, score, embed) is sent to the `gpu` queue when a GPU worker listens and to `cpu`
otherwise (`annotate.services.jobs.training_queue`); priorities, imports and exports go to `cpu`.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from annotate.exceptions import TRANSIENT_DB_ERRORS as TRANSIENT

MAX_BACKOFF_SECONDS = 300


@shared_task(bind=True, acks_late=True, ignore_result=True, soft_time_limit=3600, time_limit=3700)
def import_job_run(self, job_id: int) -> None:
    """Run an uploaded import package; safe to run twice (a finished job is left as it is)."""
    from annotate.services.imports import import_job_run as run

    run(job_id=job_id, worker=self.request.hostname)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5, soft_time_limit=3600, time_limit=3700)
def export_snapshot_run(self, snapshot_id: int) -> None:
    """Write an export snapshot's file; safe to run twice (a finished snapshot, or one being written, is left).

    A transient database error (a dropped connection) queues the snapshot again and retries with
    exponential backoff; the last attempt fails the snapshot instead.
    """
    from annotate.services.exports import export_snapshot_run as run

    may_retry = self.request.retries < self.max_retries
    try:
        run(snapshot_id=snapshot_id, worker=self.request.hostname, may_retry=may_retry)
    except TRANSIENT as exc:
        if not may_retry:
            raise  # the snapshot is failed already
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, MAX_BACKOFF_SECONDS)) from exc


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=3,
    soft_time_limit=settings.REWARDLAB_TRAIN_TIME_LIMIT - 60,
    time_limit=settings.REWARDLAB_TRAIN_TIME_LIMIT,
)
def model_run_train(self, run_id: int) -> None:
    """Train, evaluate and score a queued model run; a redelivered or duplicate message does nothing.

    A transient error puts the run back in the queue and retries with exponential backoff; the last
    attempt fails the run instead, so a run never waits forever. The queue the message came from picks
    the backend: a worker on `gpu` with REWARDLAB_VLM set fine-tunes the vision-language model.
    """
    from workers.training import TransientRunError, model_run_execute

    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    try:
        model_run_execute(
            run_id=run_id,
            worker=self.request.hostname,
            may_retry=self.request.retries < self.max_retries,
            queue=queue,
        )
    except TransientRunError as exc:
        raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, MAX_BACKOFF_SECONDS)) from exc


@shared_task(acks_late=True, ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def pairs_score_new(campaign_id: int) -> None:
    """Score pairs imported since the active model was trained, then refresh priorities."""
    from workers.training import scores_fill

    scores_fill(campaign_id=campaign_id)


@shared_task(acks_late=True, ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def campaign_embed(campaign_id: int) -> None:
    """Encode new texts and images into the embedding cache ahead of the next retrain."""
    from workers.training import campaign_embed as embed

    embed(campaign_id=campaign_id)


@shared_task(acks_late=True, ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def priorities_refresh(campaign_id: int) -> None:
    """Recompute a campaign's priorities, e.g. after a lead changed the weights or thresholds."""
    from annotate.models import Campaign
    from annotate.services.priorities import priorities_update

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is not None:
        priorities_update(campaign=campaign)


@shared_task(acks_late=True, ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def consensus_refresh(campaign_id: int) -> None:
    """Recompute and store every pair's consensus (Dawid–Skene once labels allow); safe to run twice."""
    from annotate.models import Campaign
    from annotate.services.quality import consensus_refresh_start

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is not None:
        consensus_refresh_start(campaign=campaign)
