"""Fine-tuning the VLM reward model on a campaign's labels, with the objectives of the default model.

`vlm_train` is the recipe, in `rewardlab.train.train_run`'s order, reusing its pieces:

1. the text-only twin: the same backbone with its own adapters and head, reading the prompt and the
   response without the image or the facts, K folds for `text_only_epochs`. Its out-of-fold losses are
   the L_t of SFC = L_t / (L + L_t) (Li et al., ICML 2025). Why a fit of its own rather than the trained
   multimodal model scored without its image: the formula asks what the *text alone* can learn to predict;
   a model trained with images and shown none is out of its distribution, so its loss would measure the
   missing input, not a shortcut, and on its own training samples it would not be honest either. Why the
   same backbone rather than the default MiniLM twin: the shortcuts that matter are the ones this language
   model can take. Without image tokens its sequences are short, and with LoRA it shares the frozen weights.
2. EGT: the entropy of honest predictions curates the contradicted, most uncertain labels and orders the
   curriculum (`rewardlab.train.entropy_curation`). Those predictions are the previous model's
   (`reference_p`, which the loop passes). The default model trains a probe ensemble when there is none;
   for a VLM that would double the first run, so the first run trains without curation, and SFC takes the
   uninformed multimodal loss log 2 as `rewardlab.train.sfc_weights` does.
3. the multimodal members, K folds, each sample weighted by its trust, SFC and curation, fed by the
   curriculum, in batches of similar length; then every pair is scored (`reward_model.vlm_score`).

Each member's loop is nanoGPT's: lr → forward → loss → backward → clip → step → zero_grad.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rewardlab.data import Dataset
from rewardlab.labels import Samples, current_labels, folds_of_items, samples_build, trained_item_folds
from rewardlab.losses import logit, preference_losses, weighted_mean
from rewardlab.metrics import metrics_compute
from rewardlab.scoring import Scores
from rewardlab.train import Curation, curriculum_share, entropy_curation, sample_losses, sfc_weights
from rewardlab.vlm.batches import Collator, length_batches, prefetched
from rewardlab.vlm.config import BACKEND, VLMRunConfig
from rewardlab.vlm.meter import Meter
from rewardlab.vlm.model import VLMNet, trainable_load, trainable_state, vlm_net_build
from rewardlab.vlm.reward_model import TrainedVLM, member_logits, placed, vlm_save, vlm_score

WARMUP_SHARE = 0.1  # of a member's steps, with the learning rate rising linearly
MIN_LR_SHARE = 0.1  # the cosine decay ends at this share of the learning rate
TWIN_SHARE = 0.2  # of the training progress bar: the twin reads no image tokens, a fraction of the cost


def get_lr(step: int, total: int, lr: float) -> float:
    """Return the learning rate of `step` out of `total`."""
    warmup = max(1, int(WARMUP_SHARE * total))
    # 1) linear warmup
    if step < warmup:
        return lr * (step + 1) / warmup
    # 2) cosine decay down to MIN_LR_SHARE · lr
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (MIN_LR_SHARE + (1 - MIN_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_step(
    model: VLMNet,
    inputs: Any,
    targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    grad_clip: float,
) -> torch.Tensor:
    """Take one optimizer step on a collated batch; return its loss, detached (`.item()` only to log).

    `targets` are the batch's (sign, margin, weight), each [B]: L = Σ w·BT(r_a, r_b) / Σ w.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    reward_a, reward_b = torch.chunk(model(placed(model, inputs)), 2)
    sign, margin, weight = targets
    loss = weighted_mean(preference_losses(reward_a, reward_b, sign, margin), weight)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([param for _, param in model.trainable()], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@dataclass(frozen=True)
class Targets:
    """Every sample's sign, margin and weight [N] on the device; `targets[batch]` gathers a batch's."""

    sign: torch.Tensor
    margin: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def on(cls, device: str, samples: Samples, weight: np.ndarray) -> Targets:
        arrays = (samples.sign, samples.margin, weight)
        return cls(*(torch.from_numpy(np.asarray(a, dtype=np.float32)).to(device) for a in arrays))

    def __getitem__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(batch).to(self.sign.device)
        return self.sign[index], self.margin[index], self.weight[index]


@dataclass
class VLMFit:
    """What `VLMTrainer.fit` returns: one ensemble's K members, each sample's out-of-fold logit, per-epoch history."""

    states: list[dict[str, torch.Tensor]]
    held_out: np.ndarray  # [N] logit of the member that did not train on the sample
    history: list[dict] = field(default_factory=list)


class VLMTrainer:
    """The training state the fits of one run share: the network, the collator, the samples and their folds."""

    def __init__(
        self,
        model: VLMNet,
        collator: Collator,
        samples: Samples,
        sample_fold: np.ndarray,
        run: VLMRunConfig,
        *,
        meter: Meter,
        progress: bool = True,
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        self.model, self.collator, self.samples, self.sample_fold, self.run = model, collator, samples, sample_fold, run
        self.meter, self.progress = meter, progress
        self.on_progress = on_progress or (lambda fraction: None)
        self.lengths = {mode: collator.lengths(multimodal=mode) for mode in (True, False)}  # [P] per mode
        self.initial = trainable_state(model)

    def fit(
        self,
        *,
        multimodal: bool,
        epochs: int,
        weight: np.ndarray | None = None,
        curation: Curation | None = None,
        span: tuple[float, float] = (0.0, 1.0),
    ) -> VLMFit:
        """Train the K members from the same start, each without its fold; `span` is its share of progress."""
        members = self.run.vlm.members
        weight = self.samples.weight * (1.0 if weight is None else weight)
        if curation is not None:
            weight = weight * curation.scale
        targets = Targets.on(self.run.train.device, self.samples, weight)
        result = VLMFit([], np.zeros(len(self.samples), dtype=np.float32))
        for k in range(members):
            trainable_load(self.model, self.initial)
            done = span[0] + span[1] * k / members
            history = self._member(
                k,
                multimodal,
                epochs,
                targets,
                curation,
                lambda f, done=done: self.on_progress(done + span[1] * f / members),
            )
            result.states.append(trainable_state(self.model))
            held = np.flatnonzero(self.sample_fold == k)
            result.held_out[held] = self._logits(held, multimodal)
            history[-1]["held_out_loss"] = self._loss(held, result.held_out[held], weight)
            result.history += history
        return result

    def _member(self, k: int, multimodal: bool, epochs: int, targets: Targets, curation, report) -> list[dict]:
        """Train member k for `epochs` on the samples outside fold k; return its per-epoch train losses."""
        train = self.run.train
        rng = np.random.default_rng(train.seed * 1000 + k)
        torch.manual_seed(train.seed * 1000 + k)  # LoRA dropout
        plan = [self._epoch_batches(k, epoch, multimodal, curation, rng) for epoch in range(epochs)]
        params = [param for _, param in self.model.trainable()]
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        phase = "train_multimodal" if multimodal else "train_text_only"
        history, step, total = [], 0, sum(map(len, plan))
        self.model.train()
        for epoch, batches in enumerate(tqdm(plan, desc=f"{phase} {k}", disable=not self.progress, leave=False)):
            losses = []
            with self.meter.phase(phase):
                for batch, inputs in prefetched(partial(self._encode, multimodal=multimodal), batches):
                    lr = get_lr(step, total, train.lr)
                    losses.append(
                        train_step(self.model, inputs, targets[batch], optimizer, lr=lr, grad_clip=train.grad_clip)
                    )
                    step += 1
            self.meter.count(phase, sum(map(len, batches)))
            mean = round(float(torch.stack(losses).mean()), 6) if losses else None  # None: strict JSON, no NaN
            history.append({"member": k, "epoch": epoch + 1, "train_loss": mean})
            report((epoch + 1) / epochs)
        return history

    def _encode(self, batch: np.ndarray, *, multimodal: bool) -> Any:
        return self.collator.encode(self.samples.pair[batch], multimodal=multimodal)

    def _epoch_batches(
        self, k: int, epoch: int, multimodal: bool, curation: Curation | None, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """Return one epoch's batches of sample indices: outside fold k, curated, curriculum, by length."""
        train = self.run.train
        chosen = np.flatnonzero(self.sample_fold != k)
        if curation is not None:
            chosen = chosen[curation.active[chosen]]
            chosen = chosen[curation.order[chosen] < curriculum_share(epoch, train) * len(self.samples)]
        chosen = rng.permutation(chosen)[: train.epoch_samples]
        lengths = self.lengths[multimodal][self.samples.pair[chosen]]
        return length_batches(chosen, lengths, train.batch_size, rng=rng, window=self.run.vlm.bucket_window)

    def _logits(self, held: np.ndarray, multimodal: bool) -> np.ndarray:
        pairs = self.samples.pair[held]
        self.meter.count("held_out", len(pairs))
        with self.meter.phase("held_out"):
            return member_logits(
                self.model,
                self.collator,
                pairs,
                self.lengths[multimodal],
                multimodal=multimodal,
                batch_size=self.run.train.batch_size,
            )

    def _loss(self, held: np.ndarray, logits: np.ndarray, weight: np.ndarray) -> float:
        losses = torch.from_numpy(sample_losses(logits, self.samples.take(held)))
        return round(float(weighted_mean(losses, torch.from_numpy(weight[held].astype(np.float32)))), 6)


def vlm_train(
    dataset: Dataset,
    run: VLMRunConfig,
    *,
    out: str | Path | None = None,
    reference_p: np.ndarray | None = None,
    progress: bool = True,
    on_progress: Callable[[str, float], None] | None = None,
) -> tuple[TrainedVLM, Scores, dict[str, Any]]:
    """Fine-tune the twin and the multimodal members on `dataset`'s labels, score every pair, write `out`.

    Returns what `rewardlab.pipeline.model_train` returns, with the same metrics plus `backend` and a
    `vlm` report (pairs per second, peak memory). `reference_p` [P]: the previous model's honest
    `p_a_better`, for EGT.
    """
    report = on_progress or (lambda stage, fraction: None)
    started, config = time.perf_counter(), run.train
    meter = Meter(config.device)
    samples = samples_build(dataset, config)
    if not len(samples):
        raise ValueError(f"no {config.labels!r} labels to train on in a dataset of {len(dataset.pairs)} pairs.")
    report("embedding", 0.0)  # the loop's name for preparing inputs: here, loading the model and measuring lengths
    module, processor = vlm_net_build(run.vlm, device=config.device, seed=config.seed)
    collator = Collator(processor, dataset, max_response_tokens=run.vlm.max_response_tokens)
    fold_of_item = folds_of_items(dataset, members=run.vlm.members, seed=config.seed)
    sample_fold = fold_of_item[[dataset.pairs[p].item for p in samples.pair.tolist()]]

    def training(fraction: float) -> None:
        report("training", fraction)

    trainer = VLMTrainer(
        module, collator, samples, sample_fold, run, meter=meter, progress=progress, on_progress=training
    )
    twin = trainer.fit(multimodal=False, epochs=run.vlm.text_only_epochs, span=(0.0, TWIN_SHARE))
    text_loss = sample_losses(twin.held_out, samples)
    reference = None if reference_p is None else logit(reference_p[samples.pair])
    curation = None
    if reference is not None and config.curation == "entropy":
        curation = entropy_curation(reference, samples, config)
    final = trainer.fit(
        multimodal=True,
        epochs=config.max_epochs,
        weight=sfc_weights(reference, text_loss, samples, config),
        curation=curation,
        span=(TWIN_SHARE, 1 - TWIN_SHARE),
    )
    hashes, folds = trained_item_folds(dataset, samples, fold_of_item)
    model = TrainedVLM(run, module, processor, final.states, twin.states, hashes, folds)
    report("scoring", 0.0)
    with meter.phase("score"):
        scores = vlm_score(model, dataset, collator)
    meter.count("score", len(dataset.pairs))
    metrics = metrics_compute(dataset, scores, current_labels(dataset, config))
    metrics |= {
        "backend": BACKEND,
        "history": {"text_only": twin.history, "multimodal": final.history},
        "curated": 0 if curation is None else curation.curated,
        "samples": len(samples),
        "pairs": len(dataset.pairs),
        "seconds": round(time.perf_counter() - started, 2),
        "vlm": {"model_dir": run.vlm.model_dir, "lora": run.vlm.lora, "device": config.device, **meter.report()},
    }
    if out is not None:
        vlm_save(model, out, metrics)
    return model, scores, metrics
