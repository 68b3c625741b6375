"""When a campaign's reward model is retrained, and what is kept of old runs.

A campaign has at most one queued or running run (a database constraint, so two requests racing cannot
make two). Runs are asked for every `retrain_every` human labels, by a lead, or after an import that
brings prior labels. A run is a job (`annotate.services.jobs`): a label saved while the broker is down
still leaves its retrain queued, sent once the broker is back (the next label, or any live worker's next
beat), and a run whose worker dies goes back to the queue while the campaign keeps the model it had.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from annotate.exceptions import ConflictError
from annotate.models import Campaign, ModelRun, PairScore
from annotate.services.jobs import campaign_work_send, is_unsent, job_send


def model_run_request(
    *, campaign: Campaign, trigger: str, requested_by: AbstractBaseUser | None = None
) -> tuple[ModelRun, bool]:
    """Queue a retrain of the campaign's model; return it and whether it was created now.

    When a run is already queued or running, that run is returned and nothing new is made: a campaign
    never trains twice at once.
    """
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
        transaction.on_commit(lambda: job_send(run))
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
        job_send(run)
    return run


def _active_run(campaign: Campaign) -> ModelRun | None:
    return campaign.model_runs.filter(status__in=ModelRun.ACTIVE_STATUSES).first()


def after_import(*, campaign: Campaign, priors: int) -> None:
    """New prior labels train a new model; otherwise the new pairs are scored by the active one (or embedded)."""
    if priors:
        model_run_request(campaign=campaign, trigger=ModelRun.Trigger.IMPORT)
    elif campaign.active_model_id is not None:
        campaign_work_send("pairs_score_new", campaign_id=campaign.pk)
    else:
        campaign_work_send("campaign_embed", campaign_id=campaign.pk)


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
