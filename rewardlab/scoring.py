"""The score fields of API.md for every pair, from the two ensembles' logits.

A labeled pair is scored by the member that did not train on it (k-fold, as confident learning does):
a model scores its own training labels as right, noise included. Pairs no member trained on get the
ensemble mean. Label-dependent fields compare with the pair's current label; an unlabeled pair is
compared with the multimodal model's own choice (so `shortcut_score` says whether the text alone
reaches what the image says) and has no `noise_score`.

Noise evidence is what the image adds (DESIGN.md, issue 14). A model that follows a text shortcut
contradicts every correct label on a pair where the style misleads, exactly as the text-only twin does;
counting that as noise would send correct labels back and teach the dataset the shortcut. So
`noise_score` is the contradiction of the image's own evidence (r_image, `rewardlab.model`), and a label
the full model contradicts only as the twin does is scored by `shortcut_score` instead: it then gives
the twin's probability of the model's verdict, the side the text alone reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rewardlab.losses import binary_entropy, logit_losses, mutual_information, shortcut_failure_coefficient

SCORE_FIELDS = (
    "p_a_better",
    "entropy",
    "mutual_info",
    "text_only_p_a_better",
    "shortcut_score",
    "noise_score",
    "weight",
)


@dataclass(frozen=True)
class Scores:
    """Arrays [P] of the score fields; `noise_score` is NaN where a pair has no label."""

    p_a_better: np.ndarray
    entropy: np.ndarray
    mutual_info: np.ndarray
    text_only_p_a_better: np.ndarray
    shortcut_score: np.ndarray
    noise_score: np.ndarray
    weight: np.ndarray
    member_p: np.ndarray  # [K, P] every member's P(a better), for the curation round
    image_member_p: np.ndarray  # [K, P] every member's P(a better) from the image's evidence alone

    def row(self, index: int) -> dict[str, float | None]:
        """Return one pair's fields as JSON-ready floats (None for NaN)."""
        values = {name: float(getattr(self, name)[index]) for name in SCORE_FIELDS}
        return {name: None if np.isnan(value) else round(value, 6) for name, value in values.items()}


def _honest(member_logits: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Return per pair the logit of the member held out of its fold, or the mean where fold < 0."""
    mean = member_logits.mean(0)
    columns = np.arange(member_logits.shape[1])
    held_out = member_logits[np.clip(fold, 0, None), columns]
    return np.where(fold >= 0, held_out, mean)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(np.asarray(x, np.float32))).numpy()


def scores_compute(
    multimodal_logits: np.ndarray,
    text_logits: np.ndarray,
    fold: np.ndarray,
    label: np.ndarray,
    *,
    sfc: bool,
    image_logits: np.ndarray | None = None,
) -> Scores:
    """Score P pairs from logits [K, P] of both ensembles.

    `fold` [P]: the fold of a pair some member trained on, else -1. `label` [P]: the current label's sign
    (+1 a better, -1 b better, 0 tie, NaN unlabeled). `image_logits` [K, P]: the image's own evidence,
    r_image(a) − r_image(b); a backend without that split (the VLM) passes None and its whole verdict
    counts as evidence, less what the twin shares. `weight` is SFC normalised to mean 1 over labeled
    pairs (1 everywhere when `sfc` is off), so a trainer's loss keeps its scale.
    """
    logit, text_logit = _honest(multimodal_logits, fold), _honest(text_logits, fold)
    p, text_p = _sigmoid(logit), _sigmoid(text_logit)
    member_p = _sigmoid(multimodal_logits)
    image_member_p = member_p if image_logits is None else _sigmoid(image_logits)
    labeled = ~np.isnan(label)
    target = np.where(labeled, label, np.where(p >= 0.5, 1.0, -1.0))
    decided = target != 0
    contradiction, text_contradiction = probability_against(p, target), probability_against(text_p, target)
    if image_logits is None:
        evidence = np.clip(contradiction - text_contradiction, 0.0, 1.0)
    else:
        evidence = probability_against(_sigmoid(_honest(image_logits, fold)), target)
    follows_text = decided & (contradiction > 0.5) & (text_contradiction > 0.5)
    verdict = np.where(follows_text, -target, target)
    shortcut = np.where(decided, np.where(verdict > 0, text_p, 1 - text_p), 1 - np.abs(2 * text_p - 1))
    weight = np.ones_like(p)
    if sfc:
        sign = torch.from_numpy(target.astype(np.float32))

        def loss(x: np.ndarray) -> torch.Tensor:
            return logit_losses(torch.from_numpy(x.astype(np.float32)), sign, torch.zeros_like(sign))

        weight = shortcut_failure_coefficient(loss(logit), loss(text_logit)).numpy()
        weight = weight / max(weight[labeled].mean() if labeled.any() else weight.mean(), 1e-6)
    return Scores(
        p_a_better=p,
        entropy=binary_entropy(torch.from_numpy(p)).numpy(),
        mutual_info=mutual_information(torch.from_numpy(member_p)).numpy(),
        text_only_p_a_better=text_p,
        shortcut_score=shortcut,
        noise_score=np.where(labeled, evidence, np.nan),
        weight=weight,
        member_p=member_p,
        image_member_p=image_member_p,
    )


def probability_against(p: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return the probability P(a better) = `p` gives the side `target` (+1 a, -1 b) did not choose; for a tie
    (0) or no target, how decided p is. One rule for scoring, EGT curation and the DT2IT round."""
    return np.where(target > 0, 1 - p, np.where(target < 0, p, np.abs(2 * p - 1)))
