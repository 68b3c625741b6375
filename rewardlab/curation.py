"""One DT2IT curation round: which labeled pairs to keep, send back to humans, or flip.

DT2IT-MRM retrains, rescores, and then treats the labels its models contradict: the ones every model
rejects with confidence are flipped outright, the other strong contradictions go back to annotators
(consensus then confirms or flips them), and the rest are kept. Human labels are never flipped by a
model alone, and gold answers are never touched: they are what the model is measured against.

A flip needs every member to reject the label with confidence, both in its whole verdict and in the
image's evidence alone (r_image, `rewardlab.scoring`), and never happens where the text-only twin also
rejects the label: there the model may only be following the text,
and flipping a correct label the style misleads on would teach the dataset the shortcut (issue 14). Such
labels go back to humans instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rewardlab.scoring import Scores, probability_against

Decision = Literal["keep", "reannotate", "flip"]


@dataclass(frozen=True)
class CurationConfig:
    reannotate_fraction: float = 0.1  # at most this share of labeled pairs goes back to humans per round
    noise_threshold: float = 0.5  # noise_score above which the model contradicts the label
    flip_confidence: float = 0.9  # every member must give the other side at least this probability

    def __post_init__(self) -> None:
        for name in ("reannotate_fraction", "noise_threshold", "flip_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")


def curation_round(
    scores: Scores, label: np.ndarray, *, human: np.ndarray, gold: np.ndarray, config: CurationConfig | None = None
) -> np.ndarray:
    """Return a Decision per pair.

    `label` [P]: current label sign (+1 a better, -1 b better, 0 tie, NaN none); `human` [P] bool: a human
    label supports the current one; `gold` [P] bool: a gold pair.
    """
    config = config or CurationConfig()
    decisive = ~np.isnan(label) & (np.nan_to_num(label) != 0) & ~gold

    def rejected_by_every_member(member_p: np.ndarray) -> np.ndarray:
        return (probability_against(member_p, label) >= config.flip_confidence).all(0)

    unanimous = rejected_by_every_member(scores.member_p) & rejected_by_every_member(scores.image_member_p)
    unanimous &= scores.noise_score >= config.flip_confidence
    twin_against = probability_against(scores.text_only_p_a_better, label) > 0.5
    flip = decisive & ~human & unanimous & ~twin_against
    contradicted = decisive & ~flip & (np.nan_to_num(scores.noise_score) > config.noise_threshold)
    budget = int(config.reannotate_fraction * np.count_nonzero(~np.isnan(label)))
    ranked = np.flatnonzero(contradicted)[np.argsort(-scores.noise_score[contradicted], kind="stable")]
    decisions = np.full(len(label), "keep", dtype=object)
    decisions[ranked[:budget]] = "reannotate"
    decisions[flip] = "flip"
    return decisions


def decision_counts(decisions: np.ndarray) -> dict[str, int]:
    counts = Counter(decisions.tolist())
    return {name: counts.get(name, 0) for name in ("keep", "reannotate", "flip")}
