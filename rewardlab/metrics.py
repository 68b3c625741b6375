"""Evaluation metrics of a reward model on labeled pairs: accuracy, calibration and log loss.

Every function takes ``p_a_better``, the model's probability that response a is the better (less
hallucinated) one, ``σ(r(x, a) − r(x, b))`` (DESIGN.md, "Formulas"), and the human labels, which name the
*more* hallucinated response: "a", "b", "both" or "neither". Only "a"/"b" labels say which answer is
better, so "both" and "neither" are left out of every metric. A prediction is right when it leans to the
better side; p = 0.5 exactly leans nowhere and counts as wrong, so a model that always answers 0.5 scores 0, not 0.5.
Metrics that have no "a"/"b" label to look at are nan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from rewardlab.answers import ANSWERS, BOTH, SIDES, A, B
from rewardlab.data import Dataset
from rewardlab.scoring import Scores

LABELS = ANSWERS
ANSWER_OF_SIGN = {1.0: B, -1.0: A, 0.0: BOTH}  # sign of a current label (`rewardlab.labels`) → its answer
DECISIVE = SIDES
UNKNOWN_GROUP = "unknown"
N_BINS = 10
HALF = 0.5  # confidences max(p, 1 − p) lie in [0.5, 1]
LOG_LOSS_EPS = 1e-7  # clip p so that a confident mistake costs −log(1e-7) ≈ 16, not infinity


def _validated(p_a_better: np.ndarray | Sequence[float], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (p, labels) as arrays after checking their shapes, the range of p and the label values."""
    p = np.asarray(p_a_better, dtype=float)
    labels_array = np.asarray(labels, dtype=object)
    if p.ndim != 1 or p.shape != labels_array.shape:
        raise ValueError(f"Expected one probability per label, got shapes {p.shape} and {labels_array.shape}.")
    outside = ~((p >= 0.0) & (p <= 1.0))  # also catches nan
    if outside.any():
        raise ValueError(f"Probabilities must be in [0, 1], got {p[outside][:5].tolist()}.")
    unknown = sorted(set(labels_array.tolist()) - set(LABELS), key=str)
    if unknown:
        raise ValueError(f"Labels must be one of {', '.join(LABELS)}; got {unknown!r}.")
    return p, labels_array


def _decisive(p_a_better: np.ndarray | Sequence[float], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (p, a_is_better) for the pairs labeled "a" or "b"."""
    p, labels_array = _validated(p_a_better, labels)
    mask = np.isin(labels_array, DECISIVE)
    return p[mask], labels_array[mask] == "b"  # label "b" (b more hallucinated) means a is better


def _correct(p: np.ndarray, a_is_better: np.ndarray) -> np.ndarray:
    """Return whether each prediction leans strictly to the better side (a tie is wrong)."""
    return np.where(a_is_better, p > HALF, p < HALF)


def pairwise_accuracy(p_a_better: np.ndarray | Sequence[float], more_hallucinated: Sequence[str]) -> float:
    """Return the share of "a"/"b"-labeled pairs whose better answer the model prefers (nan if none)."""
    p, a_is_better = _decisive(p_a_better, more_hallucinated)
    return float(_correct(p, a_is_better).mean()) if p.size else float("nan")


def accuracy_by_group(
    p_a_better: np.ndarray | Sequence[float], labels: Sequence[str], groups: Sequence[str | None]
) -> dict[str, dict[str, Any]]:
    """Return {group: {"accuracy", "n"}} sorted by group name, ``None`` groups under "unknown".

    ``n`` counts the group's "a"/"b" labels; a group without any has accuracy nan. Used per question type,
    where shortcut-prone types (existence, counting) show up as outliers.
    """
    p, labels_array = _validated(p_a_better, labels)
    names = np.asarray([UNKNOWN_GROUP if g is None else g for g in groups], dtype=object)
    if names.shape != labels_array.shape:
        raise ValueError(f"Expected one group per label, got {names.size} groups and {labels_array.size} labels.")
    result = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        result[name] = {
            "accuracy": pairwise_accuracy(p[mask], labels_array[mask].tolist()),
            "n": int(np.isin(labels_array[mask], DECISIVE).sum()),
        }
    return result


def calibration_bins(
    p_a_better: np.ndarray | Sequence[float], labels: Sequence[str], n_bins: int = N_BINS
) -> list[dict[str, float | int]]:
    """Return equal-width confidence bins over [0.5, 1] with their size, mean confidence and accuracy.

    Binary reliability diagram (Guo et al., 2017, "On Calibration of Modern Neural Networks"): the
    confidence of a prediction is max(p, 1 − p), the probability of the side it leans to. Bins are
    [lo, hi), the last one closed; an empty bin has nan confidence and accuracy.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    p, a_is_better = _decisive(p_a_better, labels)
    confidence = np.maximum(p, 1.0 - p)
    correct = _correct(p, a_is_better)
    edges = np.linspace(HALF, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="right")  # bin i holds edges[i] <= c < edges[i + 1]
    bins = []
    for i in range(n_bins):
        mask = index == i
        n = int(mask.sum())
        bins.append(
            {
                "lo": float(edges[i]),
                "hi": float(edges[i + 1]),
                "n": n,
                "confidence": float(confidence[mask].mean()) if n else float("nan"),
                "accuracy": float(correct[mask].mean()) if n else float("nan"),
            }
        )
    return bins


def ece_from_bins(bins: Sequence[dict[str, float | int]]) -> float:
    """Return the expected calibration error Σ_b (n_b / N)·|acc_b − conf_b| of ``calibration_bins`` (nan if N = 0)."""
    total = sum(b["n"] for b in bins)
    if not total:
        return float("nan")
    return float(sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]))


def expected_calibration_error(
    p_a_better: np.ndarray | Sequence[float], labels: Sequence[str], n_bins: int = N_BINS
) -> float:
    """Return the binary ECE on the "a"/"b" labels: how far confidence is from accuracy, bin by bin."""
    return ece_from_bins(calibration_bins(p_a_better, labels, n_bins))


def log_loss(p_a_better: np.ndarray | Sequence[float], labels: Sequence[str]) -> float:
    """Return the mean binary cross-entropy −[y log p + (1 − y) log(1 − p)], y = 1 when a is better.

    p is clipped to [eps, 1 − eps] so that one confident mistake does not make the mean infinite.
    """
    p, a_is_better = _decisive(p_a_better, labels)
    if not p.size:
        return float("nan")
    p = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(np.where(a_is_better, np.log(p), np.log1p(-p))))


def evaluate(
    p_a_better: np.ndarray | Sequence[float],
    labels: Sequence[str],
    *,
    text_only_p: np.ndarray | Sequence[float] | None = None,
    groups: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Return a run's evaluation: accuracy, n, ece, log_loss, calibration bins, and optional extras.

    ``groups`` (question types) adds ``accuracy_by_qtype``. ``text_only_p``, the text-only twin's
    probabilities on the same pairs, adds ``text_only_accuracy``: how far the text alone gets, i.e. how
    shortcut-prone the data is (Li et al., ICML 2025).
    """
    bins = calibration_bins(p_a_better, labels)
    result: dict[str, Any] = {
        "accuracy": pairwise_accuracy(p_a_better, labels),
        "n": sum(b["n"] for b in bins),
        "ece": ece_from_bins(bins),
        "log_loss": log_loss(p_a_better, labels),
        "calibration": bins,
    }
    if groups is not None:
        result["accuracy_by_qtype"] = accuracy_by_group(p_a_better, labels, groups)
    if text_only_p is not None:
        result["text_only_accuracy"] = pairwise_accuracy(text_only_p, labels)
    return result


def roc_auc(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool]) -> float:
    """Return the area under the ROC curve: P(a random positive scores above a random negative), ties ½.

    Computed from ranks (Mann-Whitney U), so it needs no threshold; nan when either class is empty.
    """
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)  # ties share their average rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _json_ready(value: Any) -> Any:
    """Replace NaN by None, so metrics stay strict JSON for browsers."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def metrics_compute(dataset: Dataset, scores: Scores, label: np.ndarray) -> dict[str, Any]:
    """Held-out metrics against the current labels, and against gold answers where there are any."""
    labeled = np.flatnonzero(~np.isnan(label))
    qtypes = [dataset.items[dataset.pairs[i].item].meta.get("qtype") for i in labeled]
    choices = [ANSWER_OF_SIGN[float(label[i])] for i in labeled]
    metrics = {
        "labels": evaluate(
            scores.p_a_better[labeled], choices, text_only_p=scores.text_only_p_a_better[labeled], groups=qtypes
        )
    }
    gold = {label.pair: label.more_hallucinated for label in dataset.labels if label.source == "gold"}
    if gold:
        metrics["gold"] = evaluate(scores.p_a_better[list(gold)], list(gold.values()))
    return _json_ready(metrics)
