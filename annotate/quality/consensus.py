"""Consensus per pair: annotators weighted by their estimated reliability (Dawid–Skene), majority while labels are few.

Dawid and Skene (1979), "Maximum likelihood estimation of observer error-rates using the EM algorithm".
Each annotator j has a confusion matrix `π_j[k, l] = P(j answers l | the truth is k)` over the four
choices a/b/both/neither, and the choices a prior `p_k`. EM starts from each pair's vote shares and
alternates

    M:  p_k ∝ s + Σ_i T[i, k]              π_j[k, l] ∝ s + Σ_{labels (i, j, l)} T[i, k]
    E:  T[i, k] ∝ p_k · Π_{labels (i, j, l)} π_j[k, l]

The pseudo-count `s` (add-one smoothing) keeps an annotator with few labels near a uniform matrix, whose
votes then barely move a posterior, and keeps every probability above zero. Both steps are products with
one sparse (pairs × annotator·answer) count matrix, so an iteration over 100k labels takes milliseconds.

When Dawid–Skene is used (the rule, `dawid_skene_applies`): the campaign has at least `DS_MIN_PAIRS`
pairs with two or more labels, and at least `DS_MIN_ANNOTATORS` annotators with `DS_MIN_SHARED_LABELS`
labels each on such pairs; below that, reliabilities cannot be told apart from noise. Then the model is
fitted on every label and decides each pair with two or more labels; a pair with one label keeps it.
Otherwise every pair takes the plain majority, and a tie gives no consensus.

A consensus's `strength` is the median strength of the labels that chose its side (truncated to an
integer); `agreement` is the posterior probability of the consensus choice under Dawid–Skene, or the
share of labels that chose it under majority.

Stored on the pairs (`services.quality.consensus_refresh`), this is the one verdict of a pair: the pair
API, the review page, priorities' "disagreement" and exports all read it. The reward model's training
target is another thing (`rewardlab.labels`): a trust-weighted vote over human and prior labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from annotate.quality.table import CHOICES, K, LabelTable

METHOD_DAWID_SKENE = "dawid-skene"
METHOD_MAJORITY = "majority"
CONSENSUS_METHODS = (METHOD_MAJORITY, METHOD_DAWID_SKENE)
NO_CHOICE = -1  # a pair without labels, or a tie

DS_MIN_PAIRS = 20
DS_MIN_ANNOTATORS = 2
DS_MIN_SHARED_LABELS = 20  # a 4×4 confusion matrix has 12 free numbers: fewer labels cannot pin them down
DS_SMOOTHING = 1.0
DS_MAX_ITERATIONS = 100
DS_TOLERANCE = 1e-4  # largest change of any posterior between two iterations that still counts as moving
TIE_TOLERANCE = 1e-9
AGREEMENT_DECIMALS = 4


@dataclass(frozen=True)
class DawidSkene:
    posterior: np.ndarray  # (P, K): P(truth of pair i is k | every label)
    confusion: np.ndarray  # (A, K, K): annotator j's P(answer l | truth k)
    prior: np.ndarray  # (K,)
    iterations: int
    annotator_ids: np.ndarray  # (A,) whose confusion matrices these are, so other labels of theirs can use them

    def confusion_of(self, annotator_ids: np.ndarray) -> np.ndarray:
        """Return the confusion matrices of the given annotators; one the fit never saw gets a uniform one.

        A uniform matrix is what the smoothed M-step gives an annotator without labels: their vote moves
        no posterior.
        """
        at = np.clip(np.searchsorted(self.annotator_ids, annotator_ids), 0, max(len(self.annotator_ids) - 1, 0))
        known = self.annotator_ids[at] == annotator_ids if len(self.annotator_ids) else np.zeros(0, bool)
        uniform = np.full((len(annotator_ids), K, K), 1.0 / K)
        return np.where(known[:, None, None], self.confusion[at], uniform) if len(self.annotator_ids) else uniform


@dataclass(frozen=True)
class Consensus:
    """Per pair, in `LabelTable.pair_ids` order: the consensus and which method decided it."""

    choice: np.ndarray  # (P,) int index into CHOICES, NO_CHOICE where there is none
    strength: np.ndarray  # (P,) float, NaN where none (both, neither, or no consensus)
    agreement: np.ndarray  # (P,) float in 0..1
    dawid_skene: np.ndarray  # (P,) bool: decided by Dawid–Skene rather than majority
    fit: DawidSkene | None

    def as_json(self, index: int) -> dict:
        """Return pair `index`'s consensus as `Pair.consensus` stores it and API.md shows it."""
        return _consensus_json(
            int(self.choice[index]), float(self.strength[index]), float(self.agreement[index]), self.dawid_skene[index]
        )

    def as_json_all(self) -> list[dict]:
        """Return `as_json` of every pair, in order: one pass over plain lists, not four array lookups per pair."""
        columns = (self.choice.tolist(), self.strength.tolist(), self.agreement.tolist(), self.dawid_skene.tolist())
        return [_consensus_json(*values) for values in zip(*columns, strict=True)]


def _consensus_json(choice: int, strength: float, agreement: float, dawid_skene: bool) -> dict:
    return {
        "more_hallucinated": None if choice == NO_CHOICE else CHOICES[choice],
        "strength": None if math.isnan(strength) else int(strength),
        "agreement": round(agreement, AGREEMENT_DECIMALS),
        "method": METHOD_DAWID_SKENE if dawid_skene else METHOD_MAJORITY,
    }


def majority(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per pair the most voted choice (NO_CHOICE on a tie or no vote) and the share that chose it.

    >>> majority(np.array([[0, 2, 1, 0], [1, 1, 0, 0]]))
    (array([ 1, -1]), array([0.66666667, 0.5       ]))
    """
    total = votes.sum(axis=1)
    top = votes.max(axis=1)
    tie = (votes == top[:, None]).sum(axis=1) > 1
    choice = np.where(tie | (total == 0), NO_CHOICE, votes.argmax(axis=1))
    return choice, top / np.maximum(total, 1)


def incidence(table: LabelTable) -> sparse.csr_matrix:
    """Return the sparse (P, A·K) count of each pair's labels by (annotator, answer): EM's one data matrix."""
    answered = table.annotator * K + table.choice
    return sparse.csr_matrix(
        (np.ones(len(answered)), (table.pair, answered)), shape=(table.n_pairs, table.n_annotators * K)
    )


def _posterior(counts: sparse.csr_matrix, confusion: np.ndarray, prior: np.ndarray) -> np.ndarray:
    # Rows (annotator, answer), columns the truth k: log π_j[k, answer].
    log_confusion = np.log(confusion).transpose(0, 2, 1).reshape(-1, K)
    log_post = np.log(prior) + counts @ log_confusion
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return post / post.sum(axis=1, keepdims=True)


def posterior(table: LabelTable, confusion: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The E-step: each pair's probability of every true choice, given the annotators' confusion matrices."""
    return _posterior(incidence(table), confusion, prior)


def _m_step(counts: sparse.csr_matrix, truth: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the class prior and every annotator's confusion matrix (A, K truth, K answer), given soft truths."""
    prior = (truth.sum(axis=0) + smoothing) / (truth.sum() + K * smoothing)
    expected = np.asarray(counts.T @ truth).reshape(-1, K, K).transpose(0, 2, 1) + smoothing
    return prior, expected / expected.sum(axis=2, keepdims=True)


def dawid_skene(
    table: LabelTable,
    *,
    smoothing: float = DS_SMOOTHING,
    max_iterations: int = DS_MAX_ITERATIONS,
    tolerance: float = DS_TOLERANCE,
) -> DawidSkene:
    """Estimate Dawid–Skene by EM from the vote shares; stop when no posterior moves by `tolerance`."""
    counts = incidence(table)
    votes = table.votes().astype(float)
    truth = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1.0)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        prior, confusion = _m_step(counts, truth, smoothing)
        updated = _posterior(counts, confusion, prior)
        moved = np.abs(updated - truth).max(initial=0.0)
        truth = updated
        if moved < tolerance:
            break
    return DawidSkene(
        posterior=truth, confusion=confusion, prior=prior, iterations=iterations, annotator_ids=table.annotator_ids
    )


def dawid_skene_applies(table: LabelTable) -> bool:
    """Tell whether the labels are enough to estimate reliabilities (the rule in the module docstring)."""
    per_pair = table.labels_per_pair()
    if np.count_nonzero(per_pair >= 2) < DS_MIN_PAIRS:
        return False
    shared = per_pair[table.pair] >= 2
    per_annotator = np.bincount(table.annotator[shared], minlength=table.n_annotators)
    return np.count_nonzero(per_annotator >= DS_MIN_SHARED_LABELS) >= DS_MIN_ANNOTATORS


def _most_probable(post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per pair the most probable choice (NO_CHOICE on an exact tie) and its probability."""
    ordered = np.sort(post, axis=1)
    tie = ordered[:, -1] - ordered[:, -2] < TIE_TOLERANCE
    return np.where(tie, NO_CHOICE, post.argmax(axis=1)), ordered[:, -1]


def median_strength(table: LabelTable, choice: np.ndarray) -> np.ndarray:
    """Return per pair the median strength of the labels that chose `choice[pair]`, truncated; NaN if none."""
    chose = (table.choice == choice[table.pair]) & ~np.isnan(table.strength)
    pairs, strengths = table.pair[chose], table.strength[chose]
    order = np.lexsort((strengths, pairs))
    pairs, strengths = pairs[order], strengths[order]
    counts = np.bincount(pairs, minlength=table.n_pairs)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    middle = np.full(table.n_pairs, np.nan)
    lower, upper = starts[has] + (counts[has] - 1) // 2, starts[has] + counts[has] // 2
    middle[has] = (strengths[lower] + strengths[upper]) / 2
    return np.floor(middle)


def reliability_fit(table: LabelTable) -> DawidSkene | None:
    """Estimate Dawid–Skene when the rule allows (`dawid_skene_applies`), else None: consensus is a majority."""
    return dawid_skene(table) if dawid_skene_applies(table) else None


def consensus(table: LabelTable) -> Consensus:
    """Return every pair's consensus: Dawid–Skene where the rule allows and the pair has two labels, else majority."""
    return consensus_with(table, reliability_fit(table))


def consensus_with(table: LabelTable, fit: DawidSkene | None) -> Consensus:
    """Return every pair's consensus with the annotators' reliabilities from `fit`, or by majority when None.

    `fit` may come from other labels than `table`'s: an export fits once on the campaign's labels, then
    decides the pairs a block at a time. On the labels it was fitted on, this gives `fit.posterior` again.
    """
    choice, agreement = majority(table.votes())
    decided_by_ds = np.zeros(table.n_pairs, dtype=bool)
    if fit is not None:
        decided_by_ds = table.labels_per_pair() >= 2
        ds_choice, ds_agreement = _most_probable(posterior(table, fit.confusion_of(table.annotator_ids), fit.prior))
        choice = np.where(decided_by_ds, ds_choice, choice)
        agreement = np.where(decided_by_ds, ds_agreement, agreement)
    return Consensus(
        choice=choice,
        strength=median_strength(table, choice),
        agreement=agreement,
        dawid_skene=decided_by_ds,
        fit=fit,
    )
