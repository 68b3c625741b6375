"""Training the ensembles: k-fold members, SFC weights, EGT curation and curriculum, early stopping.

`fit` is the loop, in nanoGPT's order (batch → forward → loss → backward → clip → step → zero_grad), for
K members at once; member k skips fold k and stops on its own loss there. `train_run` is the recipe:

1. the text-only twin, whose out-of-fold losses L_t are honest (it never saw the sample);
2. with EGT and no earlier model, a multimodal probe ensemble, for honest out-of-fold predictions;
3. the multimodal ensemble, each sample weighted by SFC = L_t / (L + L_t) (Li et al., ICML 2025) with L
   from those predictions; with EGT, the highest-entropy training pairs they contradict are dropped (or
   down-weighted), within the groups the twin gets right and wrong, and the rest are fed from low to high
   entropy. Image-contrast pairs (`rewardlab.contrast`) train beside the labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from rewardlab.config import RunConfig, TrainConfig
from rewardlab.contrast import contrast_add
from rewardlab.features import Features
from rewardlab.labels import Samples
from rewardlab.losses import (
    binary_entropy,
    logit,
    logit_losses,
    preference_losses,
    shortcut_failure_coefficient,
    weighted_mean,
)
from rewardlab.model import HeadsNet, heads_build
from rewardlab.scoring import probability_against

PREDICT_BATCH = 4096
DOWNWEIGHT = 0.1  # what a curated sample still weighs under curation_mode="downweight"


@dataclass
class Curation:
    """What EGT did to the training samples before the final fit."""

    active: np.ndarray  # [N] bool: still trained on
    scale: np.ndarray  # [N] float: extra weight
    order: np.ndarray  # [N] int: rank from lowest to highest entropy
    curated: int


@dataclass
class HeadsFit:
    """What `fit` returns: one trained heads ensemble and its per-epoch held-out losses, for learning curves.

    Each loss is the mean over members.
    """

    heads: HeadsNet
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class WarmStart:
    """A previous run's two ensembles, for a loop retrain to start from instead of a fresh initialisation.

    Starting member k from the previous member k keeps its out-of-fold scores honest: that member never
    trained on fold k either, and folds are drawn from each item's id and the seed (`folds_of_items`), so
    an item stays in its fold from run to run. A member that learns nothing better on its held-out fold
    keeps the weights it started from; one that does stops as soon as it stops improving, which from a
    trained start comes after a few epochs rather than the dozen a fresh one needs.
    """

    multimodal: HeadsNet
    text_only: HeadsNet


@torch.no_grad()
def predict_parts(heads: HeadsNet, features: Features, pairs: np.ndarray | None = None, device: str = "cpu"):
    """Return the reward differences r_a - r_b [K, len(pairs)] of every member, and those of r_image alone.

    The first are the logits of P(a better); the second, None for the text-only twin, are what looking at
    the image adds (`rewardlab.model`), the evidence `noise_score` and curation rest on.
    """
    pairs = np.arange(len(features)) if pairs is None else pairs
    heads.eval()
    totals, images = [], []
    for start in range(0, len(pairs), PREDICT_BATCH):
        text, image = heads.parts(features.batch(pairs[start : start + PREDICT_BATCH], device))
        total = text if image is None else text + image
        totals.append((total[:, 0] - total[:, 1]).float().cpu())
        if image is not None:
            images.append((image[:, 0] - image[:, 1]).float().cpu())
    heads.train()
    members = heads.out.weight.shape[0]

    def joined(parts: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(parts, dim=1).numpy() if parts else np.zeros((members, 0), np.float32)

    return joined(totals), joined(images) if heads.multimodal else None


def predict(heads: HeadsNet, features: Features, pairs: np.ndarray | None = None, device: str = "cpu"):
    """Return reward differences r_a - r_b [K, len(pairs)] (logits of P(a better)) for every member."""
    return predict_parts(heads, features, pairs, device)[0]


def out_of_fold(member_values: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Pick, per column, the value of the member that did not train on it: [K, N], folds [N] → [N]."""
    return member_values[fold, np.arange(member_values.shape[1])]


def sample_losses(logits: np.ndarray, samples: Samples) -> np.ndarray:
    """Return the per-sample BT loss of logits [..., N] (one row per member, or out-of-fold [N])."""
    sign, margin = torch.from_numpy(samples.sign), torch.from_numpy(samples.margin)
    return logit_losses(torch.from_numpy(logits), sign, margin).numpy()


def curriculum_share(epoch: int, config: TrainConfig) -> float:
    """EGT curriculum: the easiest `curriculum_start` share first, growing linearly to all samples."""
    grown = min(1.0, epoch / max(config.curriculum_epochs, 1))
    return config.curriculum_start + (1 - config.curriculum_start) * grown


class _Best:
    """Each member's parameters at its lowest held-out loss, and its patience count."""

    def __init__(self, heads: HeadsNet, members: int) -> None:
        self.loss = np.full(members, np.inf)
        self.waited = np.zeros(members, dtype=int)
        self.state = {name: p.detach().clone() for name, p in heads.named_parameters()}

    def update(self, heads: HeadsNet, losses: np.ndarray) -> None:
        better = losses < self.loss
        self.loss = np.where(better, losses, self.loss)
        self.waited = np.where(better, 0, self.waited + 1)
        index = torch.from_numpy(np.flatnonzero(better))
        for name, param in heads.named_parameters():
            self.state[name][index] = param.detach()[index]

    def restore(self, heads: HeadsNet) -> None:
        with torch.no_grad():
            for name, param in heads.named_parameters():
                param.copy_(self.state[name])


def _held_out_check(samples: Samples, sample_fold: np.ndarray, config: TrainConfig) -> tuple[Samples, np.ndarray]:
    """The samples early stopping is judged on: all of them, or a fixed seeded slice of `epoch_samples`."""
    if len(samples) <= config.epoch_samples:
        return samples, sample_fold
    index = np.sort(np.random.default_rng(config.seed).choice(len(samples), config.epoch_samples, replace=False))
    return samples.take(index), sample_fold[index]


def _held_out_losses(heads, features, samples, sample_fold, device) -> np.ndarray:
    """Return each member's trust-weighted loss on its own held-out fold [K]."""
    losses = sample_losses(predict(heads, features, samples.pair, device), samples)
    own = sample_fold[None] == np.arange(len(losses))[:, None]
    return weighted_mean(torch.from_numpy(losses), torch.from_numpy(own * samples.weight)).numpy()


def fit(
    heads: HeadsNet,
    features: Features,
    samples: Samples,
    sample_fold: np.ndarray,
    config: TrainConfig,
    *,
    sample_weight: np.ndarray | None = None,
    curation: Curation | None = None,
    labeled: int | None = None,
    desc: str = "train",
    progress: bool = True,
    on_epoch: Callable[[int], None] | None = None,
    start: HeadsNet | None = None,
) -> HeadsFit:
    """Train K members on their folds; stop each at its best held-out loss. Deterministic for the seed.

    `sample_weight` [N] multiplies the labels' own weights (SFC); `curation` drops, down-weights and
    orders samples (EGT). Only the first `labeled` samples (default all) are labels and judge early
    stopping; the rest are image-contrast pairs (`rewardlab.contrast`), trained on but not what the model
    is for. `on_epoch` gets the number of epochs done, for progress bars outside a terminal. `start`, an
    ensemble of the same shape (`WarmStart`), gives the first weights and the loss each member must beat.
    """
    device = config.device
    if start is not None:
        heads.load_state_dict(start.state_dict())
    heads.to(device)
    members = heads.out.weight.shape[0]
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best = _Best(heads, members)
    result = HeadsFit(heads)
    member_index = torch.arange(members, device=device)[:, None]
    fold_t = torch.from_numpy(sample_fold).to(device)
    sign, margin = (torch.from_numpy(a).to(device) for a in (samples.sign, samples.margin))
    weight = torch.from_numpy(samples.weight).to(device)
    if sample_weight is not None:
        weight = weight * torch.from_numpy(sample_weight.astype(np.float32)).to(device)
    if curation is not None:
        weight = weight * torch.from_numpy(curation.scale * curation.active).to(device)
    labels = slice(0, len(samples) if labeled is None else labeled)
    check = _held_out_check(samples.take(labels), sample_fold[labels], config)
    if start is not None:
        best.update(heads, _held_out_losses(heads, features, *check, device))
    bar = tqdm(range(config.max_epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        chosen = np.arange(len(samples))
        if curation is not None:
            chosen = chosen[curation.order < curriculum_share(epoch, config) * len(samples)]
        chosen = chosen[torch.randperm(len(chosen), generator=generator).numpy()][: config.epoch_samples]
        for start in range(0, len(chosen), config.batch_size):
            batch = chosen[start : start + config.batch_size]
            index = torch.from_numpy(batch).to(device)
            reward_a, reward_b = heads(features.batch(samples.pair[batch], device))
            losses = preference_losses(reward_a, reward_b, sign[index], margin[index])  # [K, B]
            w = weight[index] * (fold_t[index][None] != member_index)
            loss = weighted_mean(losses, w).sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(heads.parameters(), config.grad_clip * members**0.5)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        held_out = _held_out_losses(heads, features, *check, device)
        best.update(heads, held_out)
        result.history.append({"epoch": epoch + 1, "held_out_loss": float(held_out.mean())})
        bar.set_postfix(loss=f"{held_out.mean():.4f}")
        if on_epoch is not None:
            on_epoch(epoch + 1)
        if (best.waited >= config.patience).all():
            break
    best.restore(heads)
    return result


def entropy_curation(
    logits_oof: np.ndarray, samples: Samples, config: TrainConfig, *, text_logits_oof: np.ndarray | None = None
) -> Curation:
    """EGT: curate the highest-entropy `curation_fraction` of samples among those the model contradicts.

    Entropy comes from out-of-fold predictions, so a model that memorised a wrong label cannot vouch for
    it. Confident contradictions are left to the curation round (DT2IT: re-annotate or flip), which
    needs a human or every model to agree; here only the pairs the model finds ambiguous go.

    With the text-only twin's out-of-fold logits, samples are curated within two groups, those the twin
    gets right and those it gets wrong, each up to its own share; in the second group only where the model
    contradicts the label more than the twin does. A model that follows the text contradicts every correct
    label the text misleads on: curating them as noise would teach the shortcut harder (issue 14).
    """
    p = torch.sigmoid(torch.from_numpy(logits_oof))
    entropy = binary_entropy(p).numpy()
    against = probability_against(p.numpy(), samples.sign)
    contradicted = (samples.sign != 0) & (against > 0.5)
    groups = [np.ones(len(samples), bool)]
    if text_logits_oof is not None:
        text_against = probability_against(torch.sigmoid(torch.from_numpy(text_logits_oof)).numpy(), samples.sign)
        text_wrong = (samples.sign != 0) & (text_against > 0.5)
        contradicted &= ~text_wrong | (against > text_against)
        groups = [~text_wrong, text_wrong]
    ranked = np.concatenate([_most_uncertain(contradicted & group, entropy, config, group.sum()) for group in groups])
    active, scale = np.ones(len(samples), bool), np.ones(len(samples), np.float32)
    if config.curation_mode == "drop":
        active[ranked] = False
    else:
        scale[ranked] = DOWNWEIGHT
    order = np.empty(len(samples), dtype=np.int64)
    order[np.argsort(entropy, kind="stable")] = np.arange(len(samples))
    return Curation(active=active, scale=scale, order=order, curated=len(ranked))


def _most_uncertain(candidates: np.ndarray, entropy: np.ndarray, config: TrainConfig, size: int) -> np.ndarray:
    """Return the highest-entropy candidates, at most `curation_fraction` of a group of `size` samples."""
    budget = int(round(config.curation_fraction * size))
    return np.flatnonzero(candidates)[np.argsort(-entropy[candidates], kind="stable")][:budget]


def _with_contrast(curation: Curation | None, added: int) -> Curation | None:
    """Extend a curation of the labels to `added` image-contrast samples after them: kept, fed from the start."""
    if curation is None or not added:
        return curation
    return Curation(
        active=np.concatenate([curation.active, np.ones(added, bool)]),
        scale=np.concatenate([curation.scale, np.ones(added, np.float32)]),
        order=np.concatenate([curation.order, np.zeros(added, np.int64)]),
        curated=curation.curated,
    )


@dataclass
class HeadsTrainResult:
    """What `train_run` returns: the two heads ensembles, their training histories and what curation did."""

    multimodal: HeadsNet
    text_only: HeadsNet
    history: dict[str, list[dict]]
    curated: int
    contrast_pairs: int = 0


def train_run(
    run: RunConfig,
    features: Features,
    samples: Samples,
    sample_fold: np.ndarray,
    *,
    reference_p: np.ndarray | None = None,
    warm: WarmStart | None = None,
    progress: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> HeadsTrainResult:
    """Train the text-only twin, then the multimodal ensemble with SFC, EGT and image-contrast pairs.

    `reference_p` [N], honest P(a better) per sample from an earlier model, replaces the probe ensemble
    that otherwise measures entropy (EGT) and the multimodal loss of SFC; `warm` starts both ensembles
    from that model's (a probe, when there is no reference, still starts fresh). `on_progress` gets the
    share of the epoch budget spent, 0 to 1 (a fit that stops early skips the rest of its share).
    """
    config = run.train
    dims = features.dims
    fits = 3 if reference_p is None and config.curation == "entropy" else 2
    labeled = len(samples)
    mixed, with_pairs, mixed_fold = contrast_add(
        features,
        samples,
        sample_fold,
        per_label=config.contrast_per_label,
        weight=config.contrast_weight,
        seed=config.seed,
    )
    added = len(with_pairs) - labeled

    def epochs_of(index: int) -> Callable[[int], None] | None:
        if on_progress is None:
            return None
        return lambda epoch: on_progress((index + epoch / config.max_epochs) / fits)

    def honest(heads: HeadsNet) -> np.ndarray:
        """Out-of-fold logits of every labeled sample."""
        return out_of_fold(predict(heads, features, samples.pair, config.device), sample_fold)

    def multimodal(
        desc: str, weights: np.ndarray | None, curation: Curation | None = None, start: HeadsNet | None = None
    ) -> HeadsFit:
        weights = None if weights is None else np.concatenate([weights, np.ones(added, np.float32)])
        return fit(
            heads_build(run, dims, multimodal=True),
            mixed,
            with_pairs,
            mixed_fold,
            config,
            sample_weight=weights,
            curation=_with_contrast(curation, added),
            labeled=labeled,
            desc=desc,
            progress=progress,
            on_epoch=epochs_of(fits - 1 if desc == "multimodal" else 1),
            start=start,
        )

    twin = fit(
        heads_build(run, dims, multimodal=False),
        features,
        samples,
        sample_fold,
        config,
        desc="text-only twin",
        progress=progress,
        on_epoch=epochs_of(0),
        start=None if warm is None else warm.text_only,
    )
    history = {"text_only": twin.history}
    text_logits = honest(twin.heads)
    text_loss = sample_losses(text_logits, samples)
    reference = None if reference_p is None else logit(reference_p)
    if reference is None and config.curation == "entropy":
        probe = multimodal("multimodal probe", sfc_weights(None, text_loss, samples, config))
        history["probe"] = probe.history
        reference = honest(probe.heads)
    curation = None
    if config.curation == "entropy":
        curation = entropy_curation(reference, samples, config, text_logits_oof=text_logits)
    start = None if warm is None else warm.multimodal
    final = multimodal("multimodal", sfc_weights(reference, text_loss, samples, config), curation, start)
    history["multimodal"] = final.history
    curated = 0 if curation is None else curation.curated
    return HeadsTrainResult(final.heads, twin.heads, history, curated=curated, contrast_pairs=added)


def sfc_weights(reference: np.ndarray | None, text_loss: np.ndarray, samples: Samples, config: TrainConfig):
    """Return per-sample SFC = L_t / (L + L_t) with both losses honest, or None without SFC weighting.

    L comes from out-of-fold multimodal logits (`reference`), or, before any multimodal model exists, is
    the loss of an uninformed one (log 2). Measuring L on the samples being trained would drive it to 0
    as the model fits them and SFC to 1 everywhere, the mirror of issue 3's first pitfall; on the shortcut
    experiment of bench/loop.py that in-training variant lowered OOD accuracy (0.338 against plain 0.505).
    """
    if config.weighting == "none":
        return None
    if reference is None:
        loss = np.full(len(samples), np.log(2), dtype=np.float32)
    else:
        loss = sample_losses(reference, samples)
    return shortcut_failure_coefficient(torch.from_numpy(loss), torch.from_numpy(text_loss)).numpy()
