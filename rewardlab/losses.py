"""Losses and uncertainty measures: pure functions of tensors, with their formulas (DESIGN.md, "Formulas").

Conventions: `reward_a`, `reward_b` are the rewards of a pair's two responses; `sign` is +1 where `a` is
the chosen (less hallucinated) response, -1 where `b` is, and 0 for a tie (`both` or `neither`).
Probabilities `p` are P(a is better) = σ(r_a - r_b). Entropies are in bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6


def preference_losses(reward_a: torch.Tensor, reward_b: torch.Tensor, sign: torch.Tensor, margin: torch.Tensor):
    """Return the per-sample Bradley-Terry loss with margin (LLaVA-RLHF; Touvron et al. 2023):

        L = -log σ(r_c - r_r - m)                      for a/b labels (sign ±1)
        L = -½ [log σ(r_a - r_b) + log σ(r_b - r_a)]   for ties (sign 0)

    A tie says neither answer is better, so its loss is the cross-entropy against P(a better) = ½, which is
    smallest when the two rewards are equal; forcing it to a side would invent a preference, and dropping
    it would lose what it says. Shapes: every argument broadcasts to the output's [..., N].
    """
    difference = reward_a - reward_b
    ranked = -F.logsigmoid(sign * difference - margin)
    tied = -0.5 * (F.logsigmoid(difference) + F.logsigmoid(-difference))
    return torch.where(sign == 0, tied, ranked)


def logit_losses(logits: torch.Tensor, sign: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Return `preference_losses` from reward differences r_a - r_b (the logits of P(a better)), as
    scoring and held-out evaluation hold them."""
    return preference_losses(logits, torch.zeros_like(logits), sign, margin)


def shortcut_failure_coefficient(loss: torch.Tensor, text_loss: torch.Tensor) -> torch.Tensor:
    """Return SFC = L_t / (L + L_t) (Li et al., ICML 2025), without gradient.

    Near 1 the text-only twin fails on the sample, so the image is needed; near 0 the text alone
    answers it. `text_loss` must be honest (out-of-fold): a twin that fit the sample gives L_t → 0 and
    would silence it (issue 3, "Pitfalls").
    """
    loss, text_loss = loss.detach(), text_loss.detach()
    return text_loss / (loss + text_loss).clamp(min=EPS)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Return Σ w·v / Σ w over the last axis: weights set the mix of samples, never the loss's scale.

    Raw SFC weights shrink as the model fits and would shrink the gradient with them; normalising keeps
    the learning rate meaning the same thing in every epoch and under every weighting.
    """
    return (weights * values).sum(-1) / weights.sum(-1).clamp(min=EPS)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Return H(p) = -p log2 p - (1-p) log2 (1-p), in bits (0 at p ∈ {0, 1}, 1 at p = ½)."""
    p = p.clamp(EPS, 1 - EPS)
    return -(p * torch.log(p) + (1 - p) * torch.log1p(-p)) / math.log(2)


def mutual_information(member_p: torch.Tensor) -> torch.Tensor:
    """Return BALD's mutual information H(mean_k p_k) - mean_k H(p_k) over members [K, N] → [N].

    Zero when the members agree, whatever their confidence: it measures what more labels would teach,
    not how ambiguous the pair is (Houlsby et al. 2011).
    """
    return (binary_entropy(member_p.mean(0)) - binary_entropy(member_p).mean(0)).clamp(min=0)


def logit(p: np.ndarray) -> np.ndarray:
    """Return log(p / (1 − p)), the reward difference a probability P(a better) stands for (clipped, finite)."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)
