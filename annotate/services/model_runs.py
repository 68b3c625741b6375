"""The life of a reward-model run: asked for, sent to a worker, claimed, finished, or found dead.

A campaign has at most one queued or running run (a database constraint, so two requests racing cannot
make two). Runs are asked for every `retrain_every` human labels, by a lead, or after an import that
brings prior labels. The row is written before anything is sent to the broker, so a label saved while
the broker is down still leaves its retrain queued: `runs_dispatch_pending` sends it once the broker is
back (the next label, or any live worker's next beat, `workers.presence`). A worker that dies mid-run
stops writing heartbeats; `runs_reap_dead` marks its run failed, and the campaign keeps the model it had.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from annotate import clock
from annotate.exceptions import ConflictError
from annotate.models import Campaign, ModelRun, PairScore, Worker
from annotate.services.jobs import is_unsent, job_send, jobs_unsent, task_send

logger = logging.getLogger(__name__)

GPU_QUEUE, CPU_QUEUE = "gpu", "cpu"
# A worker that has not said it is alive for this long is taken as gone when choosing a queue.
WORKER_SEEN_SECONDS = 60
# Campaign-wide tasks that need no model: they never wait behind training on a GPU worker.
CPU_TASKS = {"priorities_refresh", "consensus_refresh"}


def model_run_request(
    *, campaign: Campaign, trigger: str, requested_by: AbstractBaseUser | None = None
) -> tuple[ModelRun, bool]:
    """Queue a retrain of the campaign's model; return it and whether it was created now.

    When a run is already queued or running, that run is returned and nothing new is made: a campaign
    never trains twice at once. A run whose worker died is failed first, so it cannot block the campaign.
    """
    runs_reap_dead(campaign=campaign)
    # Most calls come from labels while a run is going: answer those without the campaign's row lock, which
    # every submit would otherwise queue on. The locked check below still decides when none is active.
    active = _active_run(campaign)
    if active is not None:
        return active, False
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        active = _active_run(locked)
        if active is not None:
            return active, False
        try:
            with transaction.atomic():
                run = ModelRun.objects.create(
                    campaign=locked,
                    trigger=trigger,
                    requested_by=requested_by,
                    labels_at_request=locked.human_labels,
                )
        except IntegrityError:  # the constraint's backstop; the row lock above makes this rare
            return _active_run(locked), False
        Campaign.objects.filter(pk=locked.pk).update(labels_at_last_request=locked.human_labels)
        transaction.on_commit(lambda: _dispatch(run))
    return run, True


def model_run_request_by_lead(*, campaign: Campaign, requested_by: AbstractBaseUser) -> ModelRun:
    """A lead's "Retrain now": refused with 409 while a run is already queued or running."""
    run, created = model_run_request(campaign=campaign, trigger=ModelRun.Trigger.LEAD, requested_by=requested_by)
    if not created:
        raise ConflictError(
            f"Run {run.pk} of this campaign is already {run.status}; a campaign trains one model at a time.",
            extra={"run": run.pk},
        )
    return run


def retrain_if_due(*, campaign_id: int) -> ModelRun | None:
    """Ask for a retrain when `retrain_every` human labels came since the last request.

    Called after each label is committed. While a run is active, the due request returns that run, and
    a run the broker never received is sent again, so a broker outage delays a retrain, never loses it.
    """
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.human_labels - campaign.labels_at_last_request < campaign.retrain_every:
        return None
    run, created = model_run_request(campaign=campaign, trigger=ModelRun.Trigger.LABELS)
    if not created and run.status == ModelRun.Status.QUEUED and is_unsent(run):
        _dispatch(run)
    return run


def _active_run(campaign: Campaign) -> ModelRun | None:
    return campaign.model_runs.filter(status__in=ModelRun.ACTIVE_STATUSES).first()


def training_queue() -> str:
    """Send training to `gpu` when a worker with a GPU listens there; otherwise to `cpu`."""
    recent = clock.now() - timedelta(seconds=WORKER_SEEN_SECONDS)
    gpu_workers = Worker.objects.filter(seen_at__gte=recent, device__startswith="cuda").values_list("queues", flat=True)
    return GPU_QUEUE if any(GPU_QUEUE in queues for queues in gpu_workers) else CPU_QUEUE


def _dispatch(run: ModelRun) -> bool:
    """Send the run to the training queue; with the broker down it stays queued, unsent (`annotate.services.jobs`)."""
    from workers.tasks import model_run_train

    queue = training_queue()
    return job_send(ModelRun, run.pk, model_run_train, queue=queue, record={"queue": queue})


def campaign_work_send(task_name: str, *, campaign_id: int) -> bool:
    """Send a campaign-wide task of `workers.tasks` (model work to `training_queue`, CPU_TASKS to `cpu`).

    Returns False when the broker is down; that work is only a head start (the next retrain does it all).
    """
    from workers import tasks

    queue = CPU_QUEUE if task_name in CPU_TASKS else training_queue()
    what = f"{task_name} of campaign {campaign_id}"
    return task_send(getattr(tasks, task_name), campaign_id, queue=queue, what=what)


def after_import(*, campaign: Campaign, priors: int) -> None:
    """New prior labels train a new model; otherwise the new pairs are scored by the active one (or embedded)."""
    if priors:
        model_run_request(campaign=campaign, trigger=ModelRun.Trigger.IMPORT)
    elif campaign.active_model_id is not None:
        campaign_work_send("pairs_score_new", campaign_id=campaign.pk)
    else:
        campaign_work_send("campaign_embed", campaign_id=campaign.pk)


def runs_dispatch_pending() -> int:
    """Send every queued run that was never sent (or long ago, unclaimed); return how many were sent."""
    return sum(_dispatch(run) for run in jobs_unsent(ModelRun))


def runs_reap_dead(*, campaign: Campaign | None = None) -> int:
    """Fail running runs whose worker stopped writing heartbeats; return how many."""
    stale_before = clock.now() - timedelta(seconds=settings.REWARDLAB_RUN_STALE_SECONDS)
    dead = ModelRun.objects.filter(status=ModelRun.Status.RUNNING, heartbeat_at__lt=stale_before)
    if campaign is not None:
        dead = dead.filter(campaign=campaign)
    seconds = int(settings.REWARDLAB_RUN_STALE_SECONDS)
    return sum(
        _fail_dead(run, f"The worker {run.worker or '(unknown)'} stopped responding for over {seconds} s.")
        for run in dead
    )


def runs_fail_of_restarted_worker(*, hostname: str) -> int:
    """A worker that starts again under its old name was killed: fail the runs it was running."""
    runs = ModelRun.objects.filter(status=ModelRun.Status.RUNNING, worker=hostname)
    return sum(_fail_dead(run, f"The worker {hostname} was restarted while this run was going.") for run in runs)


def _fail_dead(run: ModelRun, reason: str) -> bool:
    updated = ModelRun.objects.filter(pk=run.pk, status=ModelRun.Status.RUNNING).update(
        status=ModelRun.Status.FAILED, error=f"{reason} The campaign keeps its previous model.", finished_at=clock.now()
    )
    if updated:
        logger.warning("Model run %s failed: %s", run.pk, reason)
        run_files_delete(run)
    return bool(updated)


def run_dir(run: ModelRun) -> Path:
    """Where a run's artifact lives: one directory per campaign and run, outside MEDIA_ROOT."""
    return Path(settings.REWARDLAB_MODEL_DIR) / f"campaign-{run.campaign_id}" / f"run-{run.pk}"


def run_files_delete(run: ModelRun) -> None:
    """Delete a run's pair scores and artifact (never the active model's); its metrics stay."""
    if Campaign.objects.filter(pk=run.campaign_id, active_model=run).exists():
        return
    PairScore.objects.filter(run=run).delete()
    shutil.rmtree(run_dir(run), ignore_errors=True)
    ModelRun.objects.filter(pk=run.pk).update(artifact_pruned=True)


def runs_prune(*, campaign: Campaign) -> int:
    """Keep the artifacts and scores of the last REWARDLAB_KEEP_RUNS finished runs and the active one."""
    finished = campaign.model_runs.filter(status__in=[ModelRun.Status.SUCCEEDED, ModelRun.Status.FAILED])
    old = finished.filter(artifact_pruned=False).order_by("-id")[settings.REWARDLAB_KEEP_RUNS :]
    runs = [run for run in old if run.pk != campaign.active_model_id]
    for run in runs:
        run_files_delete(run)
    return len(runs)


def worker_seen(*, hostname: str, queues: list[str], device: str, starting: bool = False) -> None:
    """Record that a worker is alive, with its queues and device; a starting worker fails its old runs."""
    now = clock.now()
    defaults = {"queues": queues, "device": device, "seen_at": now}
    if starting:
        defaults["started_at"] = now
    Worker.objects.update_or_create(
        hostname=hostname, defaults=defaults, create_defaults={**defaults, "started_at": now}
    )
    if starting:
        runs_fail_of_restarted_worker(hostname=hostname)


def workers_online() -> list[Worker]:
    recent = clock.now() - timedelta(seconds=WORKER_SEEN_SECONDS)
    return list(Worker.objects.filter(seen_at__gte=recent).order_by("hostname"))
