"""Train, save, load, score and evaluate a reward model: the library's front door.

The CLI and the Celery workers call only these functions. A trained model is one artifact directory
(`rewardlab.artifacts`): the run's config, both ensembles' weights, which items each member held out,
and the held-out metrics. An artifact whose config says `backend: "vlm"` holds a vision-language reward
model (`rewardlab.vlm`); `model_train`, `model_load` and `model_score_pairs` serve both backends.

This module only composes: the rules it uses live where they belong (folds in `rewardlab.labels`,
held-out metrics in `rewardlab.metrics`, SFC and the loop in `rewardlab.train`), so the VLM backend
reads them from there and never imports this module back (tests/rewardlab/test_imports.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rewardlab.artifacts import Artifact, artifact_read, artifact_write
from rewardlab.cache import EmbeddingCache
from rewardlab.config import RunConfig
from rewardlab.data import Dataset
from rewardlab.features import Encoders, Features, features_build
from rewardlab.labels import current_labels, folds_of_items, pair_folds, samples_build, trained_item_folds
from rewardlab.metrics import metrics_compute
from rewardlab.model import HeadsNet, heads_build
from rewardlab.scoring import Scores, scores_compute
from rewardlab.train import WarmStart, predict, predict_parts, train_run
from rewardlab.vlm.config import BACKEND as VLM_BACKEND
from rewardlab.vlm.config import VLMRunConfig

if TYPE_CHECKING:
    from rewardlab.vlm.reward_model import TrainedVLM

ARTIFACT_FORMAT = 3  # 2: heads split r_text + r_image (issue 14); 3: r_image less a blank image's, relations


@dataclass
class TrainedHeads:
    """A trained heads-backend model, as `model_train` returns it and `model_load` rebuilds it to score.

    It holds both ensembles plus the folds of the items they trained on.
    """

    run: RunConfig
    multimodal: HeadsNet
    text_only: HeadsNet
    item_hashes: np.ndarray  # [n] int64, sorted: items some member trained on
    item_folds: np.ndarray  # [n] their folds
    dims: dict[str, int]

    def folds_of(self, dataset: Dataset) -> np.ndarray:
        """Return per pair the fold of its item in training, or NO_FOLD for items the model never saw."""
        return pair_folds(dataset, self.item_hashes, self.item_folds)


def features_for(dataset: Dataset, run: RunConfig, cache_dir: str | Path | None, *, progress: bool = True):
    """Encode `dataset` with the run's encoders through the on-disk cache."""
    with EmbeddingCache(cache_dir) as cache:
        return features_build(dataset, Encoders.load(run.encoders, run.train.device), cache, progress=progress)


def model_train(
    dataset: Dataset,
    run: RunConfig | VLMRunConfig,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    features: Features | None = None,
    reference_p: np.ndarray | None = None,
    warm_from: TrainedHeads | None = None,
    progress: bool = True,
    on_progress: Callable[[str, float], None] | None = None,
) -> tuple[TrainedHeads, Scores, dict[str, Any]]:
    """Train both ensembles on `dataset`'s labels, score every pair, and write the artifact to `out`.

    `reference_p` [P], a previous run's honest `p_a_better` per pair, lets EGT curate from it instead of
    training a probe ensemble first (the loop retrains every few hundred labels; the probe would double
    each retrain's cost). `warm_from`, the model those scores came from, starts training from its heads when
    it has this run's shape and seed (`warm_start_of`); the metrics say whether it did.
    `on_progress(stage, fraction)` hears "embedding", "training" (0 to 1) and "scoring".
    A VLMRunConfig trains the vision-language backend instead (`rewardlab.vlm`; `cache_dir` and `features`
    are for the heads' embeddings and go unused), with the same returns.
    """
    if isinstance(run, VLMRunConfig):
        from rewardlab.vlm.train import vlm_train  # transformers and peft load only for this backend

        return vlm_train(dataset, run, out=out, reference_p=reference_p, progress=progress, on_progress=on_progress)
    report = on_progress or (lambda stage, fraction: None)
    started = time.perf_counter()
    report("embedding", 0.0)
    features = features or features_for(dataset, run, cache_dir, progress=progress)
    samples = samples_build(dataset, run.train)
    if not len(samples):
        raise ValueError(f"no {run.train.labels!r} labels to train on in a dataset of {len(dataset.pairs)} pairs.")
    fold_of_item = folds_of_items(dataset, members=run.model.members, seed=run.train.seed)
    pair_fold = fold_of_item[[pair.item for pair in dataset.pairs]]
    reference = None if reference_p is None else reference_p[samples.pair]
    warm = warm_start_of(warm_from, run, features.dims)
    trained = train_run(
        run,
        features,
        samples,
        pair_fold[samples.pair],
        reference_p=reference,
        warm=warm,
        progress=progress,
        on_progress=lambda fraction: report("training", fraction),
    )
    hashes, folds = trained_item_folds(dataset, samples, fold_of_item)
    model = TrainedHeads(run, trained.multimodal, trained.text_only, hashes, folds, features.dims)
    report("scoring", 0.0)
    scores = model_score(model, dataset, features)
    metrics = metrics_compute(dataset, scores, current_labels(dataset, run.train))
    metrics |= {
        "history": trained.history,
        "curated": trained.curated,
        "contrast_pairs": trained.contrast_pairs,
        "samples": len(samples),
        "pairs": len(dataset.pairs),
        "warm_start": warm is not None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if out is not None:
        model_save(model, out, metrics)
    return model, scores, metrics


def warm_start_of(model: TrainedHeads | None, run: RunConfig, dims: dict[str, int]) -> WarmStart | None:
    """Return `model`'s heads to start `run` from, or None when they cannot start it.

    They can when both ensembles have the run's shape (model and encoder settings, embedding sizes) and its
    folds (the same seed and number of members, so member k held out the same items); training settings
    may differ, as they only steer what training does from there.
    """
    if model is None:
        return None
    same_shape = model.run.model == run.model and model.run.encoders == run.encoders and model.dims == dims
    if not same_shape or model.run.train.seed != run.train.seed:
        return None
    return WarmStart(multimodal=model.multimodal, text_only=model.text_only)


def model_score(model: TrainedHeads, dataset: Dataset, features: Features) -> Scores:
    """Score every pair of `dataset`: out-of-fold where the model trained on the item, else the mean."""
    device = model.run.train.device
    multimodal, image = predict_parts(model.multimodal, features, device=device)
    return scores_compute(
        multimodal,
        predict(model.text_only, features, device=device),
        model.folds_of(dataset),
        current_labels(dataset, model.run.train),
        sfc=model.run.train.weighting == "sfc",
        image_logits=image,
    )


def model_save(model: TrainedHeads, out: str | Path, metrics: dict[str, Any]) -> Artifact:
    """Write the artifact atomically: a reader sees the old model or the new one, never half of one."""
    tensors = {f"multimodal.{k}": v for k, v in model.multimodal.state_dict().items()}
    tensors |= {f"text_only.{k}": v for k, v in model.text_only.state_dict().items()}
    tensors |= {"items.hash": torch.from_numpy(model.item_hashes), "items.fold": torch.from_numpy(model.item_folds)}
    config = {"format": ARTIFACT_FORMAT, "run": model.run.to_dict(), "dims": model.dims}
    return artifact_write(out, config=config, tensors=tensors, metrics=metrics)


def model_load(path: str | Path, *, device: str | None = None) -> tuple[TrainedHeads | TrainedVLM, Artifact]:
    """Read and verify an artifact and rebuild the model of its backend; `device` overrides the one it trained on."""
    artifact = artifact_read(path)
    if artifact.config.get("backend") == VLM_BACKEND:
        from rewardlab.vlm.reward_model import vlm_load

        return vlm_load(artifact, device=device), artifact
    if artifact.config.get("format") != ARTIFACT_FORMAT:
        raise ValueError(
            f"{path} holds a format {artifact.config.get('format')} model; this version reads format "
            f"{ARTIFACT_FORMAT}: train the campaign's model again."
        )
    run = RunConfig.from_dict(artifact.config["run"])
    if device is not None:
        run = replace(run, train=replace(run.train, device=device))
    dims = artifact.config["dims"]
    parts = {}
    for name, multimodal in (("multimodal", True), ("text_only", False)):
        heads = heads_build(run, dims, multimodal=multimodal)
        prefix = f"{name}."
        heads.load_state_dict({k[len(prefix) :]: v for k, v in artifact.tensors.items() if k.startswith(prefix)})
        parts[name] = heads.to(run.train.device).eval()
    hashes, folds = artifact.tensors["items.hash"].numpy(), artifact.tensors["items.fold"].numpy()
    return TrainedHeads(run, parts["multimodal"], parts["text_only"], hashes, folds, dims), artifact


def model_score_pairs(
    model: TrainedHeads | TrainedVLM,
    dataset: Dataset,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Scores:
    """Score every pair of `dataset` with a model of either backend, as `model_load` returned it.

    The heads read embeddings (encoded through the cache at `cache_dir`); the VLM reads the images itself.
    """
    if isinstance(model, TrainedHeads):
        return model_score(model, dataset, features_for(dataset, model.run, cache_dir, progress=progress))
    from rewardlab.vlm.reward_model import vlm_score

    return vlm_score(model, dataset)
