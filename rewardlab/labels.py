"""From a dataset's labels to training samples and to one current label per pair.

Each label is one sample, weighted by how far its source is trusted: a human or gold label weighs 1, a
prior label (AI feedback, an older round) `prior_trust`, a tie `tie_weight` on top. Folds are drawn per
item, never per pair, so no image and prompt is on both sides of a fold boundary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from rewardlab.answers import BOTH, NEITHER, A, B
from rewardlab.config import TrainConfig
from rewardlab.data import Dataset, Label

SIGN = {B: 1, A: -1, BOTH: 0, NEITHER: 0}  # +1: a is better, i.e. b is the more hallucinated
SOURCES = {"prior": ("prior",), "human": ("human", "gold"), "all": ("prior", "human", "gold")}
NO_FOLD = -1


@dataclass(frozen=True)
class Samples:
    """One row per training label: which pair, which side wins, with what margin and weight."""

    pair: np.ndarray  # [N] int64
    sign: np.ndarray  # [N] float32: +1 a better, -1 b better, 0 tie
    margin: np.ndarray  # [N] float32
    weight: np.ndarray  # [N] float32

    COLUMNS = ("pair", "sign", "margin", "weight")

    def __len__(self) -> int:
        return len(self.pair)

    def take(self, index: np.ndarray) -> Samples:
        """The samples at `index` (an index array or a boolean mask), every column alike."""
        return Samples(*(getattr(self, name)[index] for name in self.COLUMNS))


def label_margin(strength: int | None, margins: tuple[float, ...]) -> float:
    """Return the BT margin of a strength (1..S); strengths past the table take its last entry."""
    if strength is None:
        return 0.0
    return margins[min(max(strength, 1), len(margins)) - 1]


def _trust(label: Label, config: TrainConfig) -> float:
    trust = config.prior_trust if label.source == "prior" else 1.0
    if SIGN[label.more_hallucinated] == 0:
        trust *= config.tie_weight
    return trust * label.weight


def samples_build(dataset: Dataset, config: TrainConfig) -> Samples:
    """Return the samples of the labels `config.labels` selects, in the dataset's order."""
    chosen = [label for label in dataset.labels if label.source in SOURCES[config.labels]]
    return Samples(
        pair=np.array([label.pair for label in chosen], dtype=np.int64),
        sign=np.array([SIGN[label.more_hallucinated] for label in chosen], dtype=np.float32),
        margin=np.array([label_margin(label.strength, config.margins) for label in chosen], dtype=np.float32),
        weight=np.array([_trust(label, config) for label in chosen], dtype=np.float32),
    )


def current_labels(dataset: Dataset, config: TrainConfig) -> np.ndarray:
    """Return, per pair, the sign its labels say now (NaN when unlabeled).

    A gold answer is the truth and wins; otherwise the trust-weighted vote of the selected labels, where
    a tie between +1 and -1 votes reads as a tie label (0).

    This is the model's target, not the campaign's verdict on a pair (the web app's stored consensus,
    Dawid–Skene over human labels, which the pair API and exports serve): a training run also weighs prior
    labels (AI feedback, older rounds) at `prior_trust`, works on a dataset file with no annotators to
    estimate, and must give every labeled pair a sign, where the consensus may have none.
    """
    votes = np.zeros((len(dataset.pairs), 3))  # columns: sign -1, 0, +1
    gold = np.full(len(dataset.pairs), np.nan)
    for label in dataset.labels:
        sign = SIGN[label.more_hallucinated]
        if label.source == "gold":
            gold[label.pair] = sign
        if label.source in SOURCES[config.labels]:
            votes[label.pair, sign + 1] += _trust(label, config)
    current = np.full(len(dataset.pairs), np.nan)
    voted = votes.sum(1) > 0
    lead = votes.argmax(1) - 1.0
    even = voted & (votes[:, 0] == votes[:, 2]) & (votes[:, 0] > 0)
    current[voted] = np.where(even[voted], 0.0, lead[voted])
    return np.where(np.isnan(gold), current, gold)


def folds_of_items(dataset: Dataset, *, members: int, seed: int) -> np.ndarray:
    """Return each item's fold in 0..members-1, drawn from its external_id and the seed."""
    digests = (hashlib.sha256(f"{seed}:{item.external_id}".encode()).digest() for item in dataset.items)
    return np.array([int.from_bytes(digest[:8], "big") % members for digest in digests], dtype=np.int64)


def item_hash(external_id: str) -> int:
    return int.from_bytes(hashlib.sha256(external_id.encode()).digest()[:8], "big", signed=True)


def trained_item_folds(dataset: Dataset, samples: Samples, fold_of_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted hashes of the items some label trained on, and their folds, as artifacts keep them.

    Items are kept by a hash of their external_id, not by index, so a later dataset (new pairs imported
    since) finds which of its pairs a member held out (`pair_folds`).
    """
    labeled_items = sorted({dataset.pairs[p].item for p in samples.pair.tolist()})
    hashes = np.array([item_hash(dataset.items[i].external_id) for i in labeled_items], dtype=np.int64)
    order = np.argsort(hashes)
    return hashes[order], fold_of_item[labeled_items][order]


def pair_folds(dataset: Dataset, item_hashes: np.ndarray, item_folds: np.ndarray) -> np.ndarray:
    """Return per pair the fold of its item in training, or NO_FOLD for items the model never saw."""
    hashes = np.array([item_hash(item.external_id) for item in dataset.items], dtype=np.int64)
    at = np.clip(np.searchsorted(item_hashes, hashes), 0, max(len(item_hashes) - 1, 0))
    seen = (item_hashes[at] == hashes) if len(item_hashes) else np.zeros(len(hashes), bool)
    folds = np.where(seen, item_folds[at] if len(item_folds) else NO_FOLD, NO_FOLD)
    return np.array([folds[pair.item] for pair in dataset.pairs], dtype=np.int64)
