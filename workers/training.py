"""A reward-model run inside a worker: load the campaign's labels (`workers.campaign_data`), train, score,
switch models.

The order is what keeps annotation safe: the new model's scores are written next to the old ones, and
only then, in one short transaction, does the campaign's `active_model` point at the new run. Until that
moment every page, endpoint and priority reads the previous model; a run that fails or is killed
before it changes nothing. Priorities are recomputed after the switch, in batches that lock few rows.

Workers import this module (it pulls in torch through `rewardlab`); the web process never does.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict

import numpy as np
import torch
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Exists, OuterRef

from annotate import clock
from annotate.bulk import rows_insert
from annotate.exceptions import TRANSIENT_DB_ERRORS
from annotate.models import Campaign, ModelRun, Pair, PairScore
from annotate.services.jobs import GPU_QUEUE, job_requeue, job_succeed, job_taken
from annotate.services.model_runs import retrain_if_due, run_dir, run_files_delete, runs_prune
from annotate.services.priorities import priorities_update
from annotate.services.quality import consensus_refresh
from rewardlab import data as rl
from rewardlab.artifacts import artifact_sha256
from rewardlab.config import EncoderConfig, RunConfig, TrainConfig, margins_for
from rewardlab.pipeline import TrainedHeads, features_for, model_load, model_score_pairs, model_train
from rewardlab.scoring import SCORE_FIELDS, Scores
from rewardlab.vlm.config import BACKEND as VLM_BACKEND
from rewardlab.vlm.config import VLMConfig, VLMRunConfig, vlm_train_config
from workers.campaign_data import campaign_dataset

logger = logging.getLogger(__name__)

# Where each stage starts on the run's 0..1 progress bar; training takes most of it.
STAGE_START = {"loading": 0.0, "embedding": 0.05, "training": 0.25, "scoring": 0.85, "prioritizing": 0.95}
PROGRESS_STEP = 0.01


class TransientRunError(Exception):
    """The run met an error that may pass; it was put back in the queue to be tried again."""


def device_default() -> str:
    return settings.REWARDLAB_DEVICE or ("cuda" if torch.cuda.is_available() else "cpu")


def run_config_for(campaign: Campaign, *, device: str) -> RunConfig:
    """The reward model's settings for a campaign: encoders from the environment, margins per strength."""
    encoders = EncoderConfig(
        text=settings.REWARDLAB_TEXT_ENCODER or EncoderConfig.text,
        image=settings.REWARDLAB_IMAGE_ENCODER or EncoderConfig.image,
    )
    train = TrainConfig(device=device, margins=margins_for(campaign.strength_scale), labels="all")
    return RunConfig(encoders=encoders, train=train)


def training_config_for(campaign: Campaign, *, device: str, queue: str) -> RunConfig | VLMRunConfig:
    """The settings of a run taken from `queue`: the vision-language model when this worker has one and
    took the run from the `gpu` queue (issue 8), else the default heads over cached embeddings."""
    if not (settings.REWARDLAB_VLM and queue == GPU_QUEUE):
        return run_config_for(campaign, device=device)
    train = vlm_train_config(device=device, margins=margins_for(campaign.strength_scale), labels="all")
    return VLMRunConfig(VLMConfig(model_dir=settings.REWARDLAB_VLM), train)


def _reference_p(campaign: Campaign, pair_ids: np.ndarray) -> np.ndarray | None:
    """The active model's `p_a_better` per pair, 0.5 (no opinion) for pairs it never scored; None before any."""
    if campaign.active_model_id is None:
        return None
    known = dict(PairScore.objects.filter(run_id=campaign.active_model_id).values_list("pair_id", "p_a_better"))
    if not known:
        return None
    return np.array([known.get(int(pair_id), 0.5) for pair_id in pair_ids], dtype=np.float32)


def _warm_from(run: ModelRun, config: RunConfig | VLMRunConfig) -> TrainedHeads | None:
    """The active model to start a retrain from (`rewardlab.pipeline.warm_start_of`), or None to start fresh.

    Only the loop's own retrains, asked for by new labels, start warm: they come every few hundred labels
    and must be quick. A lead's *Retrain now* and an import's run start fresh, so a lead can always have
    the model a fresh fit gives (at 100k pairs a warm retrain kept the previous model's held-out accuracy,
    0.781, where a fresh one reached 0.786). Only heads start heads: a VLM run, or an active VLM (whose
    weights would be loaded for nothing), starts fresh. The artifact is read again and verified; one that
    is pruned, missing or unreadable starts the retrain fresh too.
    """
    previous = run.campaign.active_model
    if run.trigger != ModelRun.Trigger.LABELS or previous is None or not isinstance(config, RunConfig):
        return None
    if previous.artifact_pruned or not previous.artifact_path or previous.config.get("backend") == VLM_BACKEND:
        return None
    try:
        model, _ = model_load(previous.artifact_path, device="cpu")
    except (OSError, ValueError) as exc:
        logger.warning("Model run %s: its artifact cannot start run %s (%s); training fresh.", previous.pk, run.pk, exc)
        return None
    return model if isinstance(model, TrainedHeads) else None


class _RunReporter:
    """Write a run's stage and progress to its row, at most once per PROGRESS_STEP, and time each stage."""

    def __init__(self, run: ModelRun) -> None:
        self.run = run
        self.reported = -1.0
        self.stage = ""
        self.seconds: dict[str, float] = {}  # wall time per stage, kept in the run's metrics
        self._stage_began = time.perf_counter()

    def _close_stage(self) -> None:
        now = time.perf_counter()
        if self.stage:
            self.seconds[self.stage] = round(self.seconds.get(self.stage, 0.0) + now - self._stage_began, 3)
        self._stage_began = now

    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent in each stage so far, the current one included."""
        self._close_stage()
        return dict(self.seconds)

    def __call__(self, stage: str, fraction: float = 0.0) -> None:
        stages = list(STAGE_START)
        start = STAGE_START[stage]
        end = STAGE_START[stages[stages.index(stage) + 1]] if stage != stages[-1] else 1.0
        progress = round(start + (end - start) * min(max(fraction, 0.0), 1.0), 4)
        if stage == self.stage and progress - self.reported < PROGRESS_STEP:
            return
        if stage != self.stage:
            self._close_stage()
        self.stage, self.reported = stage, progress
        ModelRun.objects.filter(pk=self.run.pk, status=ModelRun.Status.RUNNING).update(stage=stage, progress=progress)


def model_run_execute(*, run_id: int, worker: str, may_retry: bool = True, queue: str = "") -> ModelRun | None:
    """Train, evaluate and score a run, make it the campaign's model, then refresh priorities; None when
    it is not to be run (`jobs.job_taken`: a redelivered or duplicate message does nothing).

    `queue` is the one the run's message came from (by default the one it was sent to): it picks the
    backend (`training_config_for`). A transient error puts the run back in the queue and raises
    TransientRunError (when `may_retry`); any other error fails the run with its reason, and the
    campaign keeps the model it had.
    """
    device = device_default()
    with job_taken(ModelRun, run_id, worker=worker, device=device, stage=ModelRun.Stage.LOADING) as run:
        if run is None:
            logger.info("Model run %s is not to be run here; nothing to do.", run_id)
            return None
        try:
            _train_and_activate(run, device=device, queue=queue or run.queue, report=_RunReporter(run))
        except TRANSIENT_DB_ERRORS as exc:
            close_old_connections()
            if may_retry:
                job_requeue(run, reason=f"Retrying after: {exc}")
                raise TransientRunError(str(exc)) from exc
            _fail(run, exc)
            raise
        except BaseException as exc:  # SoftTimeLimitExceeded is a BaseException subclass in some Celery pools
            _fail(run, exc)
            raise
    runs_prune(campaign=run.campaign)
    retrain_if_due(campaign_id=run.campaign_id)
    return run


def _train_and_activate(run: ModelRun, *, device: str, queue: str, report: _RunReporter) -> None:
    report("loading", 0.0)
    campaign = run.campaign
    config = training_config_for(campaign, device=device, queue=queue)
    ModelRun.objects.filter(pk=run.pk).update(config=config.to_dict())
    dataset, pair_ids = campaign_dataset(campaign)
    out = run_dir(run)
    _, scores, metrics = model_train(
        dataset,
        config,
        out=out,
        cache_dir=settings.REWARDLAB_CACHE_DIR,
        reference_p=_reference_p(campaign, pair_ids),
        warm_from=_warm_from(run, config),
        progress=False,
        on_progress=report,
    )
    metrics["labels_at_request"] = run.labels_at_request
    metrics["prior_review"] = prior_review(dataset)
    _scores_write(run, pair_ids, scores)
    if not _activate(run, metrics=metrics, sha256=artifact_sha256(out), path=str(out)):
        run_files_delete(run)
        return
    report("prioritizing", 0.0)
    fresh = Campaign.objects.get(pk=campaign.pk)
    consensus_refresh(campaign=fresh)
    summary = priorities_update(campaign=fresh)
    job_succeed(
        run,
        stage=ModelRun.Stage.DONE,
        metrics={**metrics, "surfaced": summary, "stage_seconds": report.stage_seconds()},
    )


def prior_review(dataset: rl.Dataset) -> dict[str, int]:
    """Count pairs whose prior label humans have labeled since, and how often their majority kept or overruled it.

    This is the DT2IT step seen from the lead's side: suspected noise goes back to annotators, and their
    consensus confirms or flips the imported label (in training, each human label weighs 1, a prior 0.5).
    """
    prior: dict[int, str] = {}
    human: dict[int, Counter] = defaultdict(Counter)
    for label in dataset.labels:
        if label.source == "prior":
            prior.setdefault(label.pair, label.more_hallucinated)
        elif label.source == "human":
            human[label.pair][label.more_hallucinated] += 1
    review = {"reviewed": 0, "confirmed": 0, "flipped": 0}
    for pair, votes in human.items():
        if pair not in prior:
            continue
        review["reviewed"] += 1
        ranked = votes.most_common(2)
        if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
            continue  # a tie among humans decides nothing yet
        review["confirmed" if ranked[0][0] == prior[pair] else "flipped"] += 1
    return review


def _scores_write(run: ModelRun, pair_ids: np.ndarray, scores: Scores, *, replace: bool = True) -> None:
    """Insert one PairScore per pair in bulk (COPY on PostgreSQL); a rerun first drops what it wrote."""
    if replace:
        PairScore.objects.filter(run=run).delete()
    columns = {name: getattr(scores, name).astype(float) for name in SCORE_FIELDS}
    noise = columns["noise_score"]
    rows = (
        (
            run.pk,
            int(pair_id),
            *(None if name == "noise_score" and np.isnan(noise[i]) else columns[name][i] for name in SCORE_FIELDS),
        )
        for i, pair_id in enumerate(pair_ids)
    )
    rows_insert(PairScore, ("run_id", "pair_id", *SCORE_FIELDS), rows)
    ModelRun.objects.filter(pk=run.pk).update(scored_at=clock.now())


def _activate(run: ModelRun, *, metrics: dict, sha256: str, path: str) -> bool:
    """Point the campaign at the run, in one transaction; False when the run was failed meanwhile."""
    with transaction.atomic():
        updated = ModelRun.objects.filter(pk=run.pk, status=ModelRun.Status.RUNNING).update(
            metrics=metrics, artifact_path=path, artifact_sha256=sha256
        )
        if updated:
            Campaign.objects.filter(pk=run.campaign_id).update(active_model=run)
    return bool(updated)


def _fail(run: ModelRun, exc: BaseException) -> None:
    """Fail the run with a reason a lead can act on; an already-active model stays active."""
    reason = str(exc) or type(exc).__name__
    active = Campaign.objects.filter(pk=run.campaign_id, active_model=run).exists()
    status = ModelRun.Status.SUCCEEDED if active else ModelRun.Status.FAILED
    prefix = "The model is active but priorities were not updated" if active else "The run failed"
    ModelRun.objects.filter(pk=run.pk, status=ModelRun.Status.RUNNING).update(
        status=status, error=f"{prefix}: {type(exc).__name__}: {reason}", finished_at=clock.now()
    )
    if not active:
        run_files_delete(run)
    logger.exception("Model run %s: %s", run.pk, reason)


def scores_fill(*, campaign_id: int) -> int:
    """Score, with the active model, the pairs it has no scores for (an import since); return how many.

    A retrain scores every pair anyway, so nothing is done while one is queued or running.
    """
    campaign = Campaign.objects.select_related("active_model").get(pk=campaign_id)
    run = campaign.active_model
    busy = campaign.model_runs.filter(status__in=ModelRun.ACTIVE_STATUSES).exists()
    if run is None or run.artifact_pruned or busy:
        return 0
    scored = PairScore.objects.filter(run=run, pair=OuterRef("pk"))
    dataset, pair_ids = campaign_dataset(campaign, pairs=Pair.objects.filter(campaign=campaign).exclude(Exists(scored)))
    if not len(pair_ids):
        return 0
    model, _ = model_load(run.artifact_path, device=device_default())  # either backend, as its artifact says
    scores = model_score_pairs(model, dataset, cache_dir=settings.REWARDLAB_CACHE_DIR)
    _scores_write(run, pair_ids, scores, replace=False)
    priorities_update(campaign=campaign)
    return len(pair_ids)


def campaign_embed(*, campaign_id: int) -> int:
    """Encode the campaign's texts and images that are not cached yet, so the next retrain trains heads only."""
    campaign = Campaign.objects.get(pk=campaign_id)
    dataset, pair_ids = campaign_dataset(campaign)
    features_for(
        dataset, run_config_for(campaign, device=device_default()), settings.REWARDLAB_CACHE_DIR, progress=False
    )
    return len(pair_ids)
