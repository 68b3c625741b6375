"""A trained VLM reward model: score a dataset, write it as an artifact, and read it back.

The artifact (`rewardlab.artifacts`) holds the run's config with `backend: "vlm"`, the base model's
directory and fingerprint, every member's trainable tensors (adapters and head, or all weights without
LoRA) for both ensembles, and which items each member held out. The base weights stay in their directory:
a 7B model is not copied per run, and loading checks it is still the one the run trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardlab.artifacts import Artifact, ArtifactError, artifact_write
from rewardlab.data import Dataset
from rewardlab.labels import current_labels, pair_folds
from rewardlab.scoring import Scores, scores_compute
from rewardlab.vlm.batches import Collator, length_batches, prefetched
from rewardlab.vlm.config import BACKEND, VLMRunConfig
from rewardlab.vlm.model import VLMNet, model_fingerprint, trainable_load, vlm_net_build

ARTIFACT_FORMAT = 1
ENSEMBLES = ("multimodal", "text_only")
SCORE_BATCH_FACTOR = 2  # scoring keeps no activations for backward, so it takes twice the training batch

MemberState = dict[str, torch.Tensor]


@dataclass
class TrainedVLM:
    """A trained VLM-backend model: one network and processor, and both ensembles' members as tensors to swap in."""

    run: VLMRunConfig
    model: VLMNet
    processor: Any
    multimodal: list[MemberState]
    text_only: list[MemberState]  # the same backbone without image or facts: the SFC twin
    item_hashes: np.ndarray  # [n] int64, sorted: items some member trained on
    item_folds: np.ndarray  # [n] their folds

    def folds_of(self, dataset: Dataset) -> np.ndarray:
        return pair_folds(dataset, self.item_hashes, self.item_folds)

    def collator(self, dataset: Dataset) -> Collator:
        return Collator(self.processor, dataset, max_response_tokens=self.run.vlm.max_response_tokens)


def placed(model: VLMNet, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return a processor batch's tensors on the model's device, floating ones (pixels) in its dtype."""
    device = model.head.weight.device
    return {
        name: value.to(device, model.input_dtype) if value.is_floating_point() else value.to(device)
        for name, value in inputs.items()
        if isinstance(value, torch.Tensor)
    }


@torch.no_grad()
def member_logits(
    model: VLMNet, collator: Collator, pairs: np.ndarray, lengths: np.ndarray, *, multimodal: bool, batch_size: int
) -> np.ndarray:
    """Return r_a - r_b [len(pairs)] of the member now in `model`; `lengths` [P] orders the batches."""
    model.eval()
    out = np.zeros(len(pairs), dtype=np.float32)
    batches = length_batches(np.arange(len(pairs)), lengths[pairs], batch_size)
    for batch, inputs in prefetched(lambda b: collator.encode(pairs[b], multimodal=multimodal), batches):
        reward_a, reward_b = torch.chunk(model(placed(model, inputs)), 2)
        out[batch] = (reward_a - reward_b).float().cpu().numpy()
    model.train()
    return out


def ensemble_logits(model: TrainedVLM, collator: Collator, *, multimodal: bool) -> np.ndarray:
    """Return every member's logits on every pair of the collator's dataset [K, P]."""
    members = model.multimodal if multimodal else model.text_only
    pairs = np.arange(len(collator.dataset.pairs))
    lengths = collator.lengths(multimodal=multimodal)
    batch_size = model.run.train.batch_size * SCORE_BATCH_FACTOR
    logits = []
    for state in members:
        trainable_load(model.model, state)
        logits.append(
            member_logits(model.model, collator, pairs, lengths, multimodal=multimodal, batch_size=batch_size)
        )
    return np.stack(logits)


def vlm_score(model: TrainedVLM, dataset: Dataset, collator: Collator | None = None) -> Scores:
    """Score every pair: out-of-fold where a member held its item out, else the members' mean."""
    collator = collator or model.collator(dataset)
    return scores_compute(
        ensemble_logits(model, collator, multimodal=True),
        ensemble_logits(model, collator, multimodal=False),
        model.folds_of(dataset),
        current_labels(dataset, model.run.train),
        sfc=model.run.train.weighting == "sfc",
    )


def vlm_save(model: TrainedVLM, out: str | Path, metrics: dict[str, Any]) -> Artifact:
    """Write the artifact atomically: config with the backend and base model, member tensors, metrics."""
    tensors = {
        f"{name}.{k}.{key}": value
        for name in ENSEMBLES
        for k, state in enumerate(getattr(model, name))
        for key, value in state.items()
    }
    tensors |= {"items.hash": torch.from_numpy(model.item_hashes), "items.fold": torch.from_numpy(model.item_folds)}
    config = {
        "format": ARTIFACT_FORMAT,
        "backend": BACKEND,
        "run": model.run.to_dict(),
        "model_dir": model.run.vlm.model_dir,
        "model_fingerprint": model_fingerprint(model.run.vlm),
    }
    return artifact_write(out, config=config, tensors=tensors, metrics=metrics)


def vlm_load(artifact: Artifact, *, device: str | None = None) -> TrainedVLM:
    """Rebuild a model from its artifact over the base model it names; `device` overrides the trained one."""
    run = VLMRunConfig.from_dict(artifact.config["run"])
    run = run if device is None else run.on_device(device)
    recorded, found = artifact.config["model_fingerprint"], model_fingerprint(run.vlm)
    if recorded != found:
        raise ArtifactError(
            f"{artifact.path}: the base model at {run.vlm.model_dir} is not the one this run trained on "
            f"(fingerprint {recorded} expected, {found} found)."
        )
    module, processor = vlm_net_build(run.vlm, device=run.train.device, seed=run.train.seed)
    members = {name: _members(artifact.tensors, name, run.vlm.members) for name in ENSEMBLES}
    hashes, folds = artifact.tensors["items.hash"].numpy(), artifact.tensors["items.fold"].numpy()
    return TrainedVLM(run, module, processor, members["multimodal"], members["text_only"], hashes, folds)


def _members(tensors: dict[str, torch.Tensor], name: str, count: int) -> list[MemberState]:
    prefixes = [f"{name}.{k}." for k in range(count)]
    return [{key[len(p) :]: value for key, value in tensors.items() if key.startswith(p)} for p in prefixes]
