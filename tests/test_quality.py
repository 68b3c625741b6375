"""The quality math on its own (annotate/quality): consensus, Krippendorff's alpha, bias flags. No database."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from annotate.models import Choice
from annotate.quality import agreement, bias
from annotate.quality.consensus import (
    DS_MIN_PAIRS,
    DS_MIN_SHARED_LABELS,
    consensus,
    dawid_skene_applies,
    majority,
    posterior,
)
from annotate.quality.table import CHOICES, LabelTable
from rewardlab.answers import ANSWERS


def table_of(labels: list[tuple[int, int, str, int | None]]) -> LabelTable:
    """Build a table from (pair, annotator, choice, strength) rows."""
    return LabelTable.from_columns(*zip(*labels, strict=True))


def confusion_with_diagonal(diagonal: float) -> np.ndarray:
    """A 4×4 confusion matrix: right with probability `diagonal`, each wrong answer equally likely."""
    matrix = np.full((4, 4), (1 - diagonal) / 3)
    np.fill_diagonal(matrix, diagonal)
    return matrix


# Consensus ------------------------------------------------------------------------------------------------


def test_dawid_skene_posterior_on_a_hand_computed_case():
    """One pair: the reliable annotator 0 says a, the unreliable 1 and 2 both say b.

    Prior uniform (1/4 each). Annotator 0 is right 85% of the time (each wrong answer 5%); annotators 1
    and 2 are right 40% of the time (each wrong answer 20%). Up to the common factor 1/4:

        truth a:        0.85 (0 says a) · 0.20 (1 says b) · 0.20 (2 says b) = 0.034
        truth b:        0.05            · 0.40            · 0.40            = 0.008
        truth both:     0.05            · 0.20            · 0.20            = 0.002
        truth neither:  0.05            · 0.20            · 0.20            = 0.002

    They sum to 0.046, so P(a) = 0.034 / 0.046 = 0.7391…, P(b) = 0.1739…, P(both) = P(neither) = 0.0435….
    The majority says b (2 of 3); weighted by reliability, a wins.
    """
    table = table_of([(1, 0, "a", 2), (1, 1, "b", 3), (1, 2, "b", 1)])
    confusion = np.stack([confusion_with_diagonal(0.85), confusion_with_diagonal(0.40), confusion_with_diagonal(0.40)])
    result = posterior(table, confusion, np.full(4, 0.25))
    np.testing.assert_allclose(result[0], np.array([0.034, 0.008, 0.002, 0.002]) / 0.046)
    assert CHOICES[int(majority(table.votes())[0][0])] == "b"


def simulated_crowd(n_pairs: int = 120, seed: int = 7) -> tuple[LabelTable, np.ndarray]:
    """Three annotators label every pair: 0 is always right, 1 and 2 answer at random half the time."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(4, size=n_pairs, p=[0.4, 0.4, 0.1, 0.1])
    labels = []
    for pair in range(n_pairs):
        for annotator in range(3):
            guess = annotator > 0 and rng.random() < 0.5
            choice = int(rng.integers(4)) if guess else int(truth[pair])
            labels.append((pair, annotator, CHOICES[choice], 2 if choice < 2 else None))
    return table_of(labels), truth


def test_dawid_skene_weighs_the_reliable_annotator_over_a_majority():
    table, truth = simulated_crowd()
    result = consensus(table)

    assert result.fit is not None and result.dawid_skene.all()
    assert {result.as_json(i)["method"] for i in range(table.n_pairs)} == {"dawid-skene"}
    majority_choice = majority(table.votes())[0]
    assert np.mean(result.choice == truth) > np.mean(majority_choice == truth)
    assert np.mean(result.choice == truth) >= 0.9
    # Three different answers are a tie for the majority; the reliabilities still decide them.
    assert (majority_choice == -1).any() and (result.choice >= 0).all()
    # The estimated confusion matrices rank the annotators the way they were simulated.
    diagonal = np.einsum("jkk->jk", result.fit.confusion).mean(axis=1)
    assert diagonal[0] > diagonal[1] and diagonal[0] > diagonal[2]


def test_majority_while_labels_are_few():
    """Pair 1: b, b, a (strengths 3, 2, 4) → b, median of 3 and 2 truncated to 2, two thirds agree.
    Pair 2: a, b → a tie, no consensus. Pair 3: neither, alone → neither, no strength."""
    table = table_of(
        [(1, 10, "b", 3), (1, 11, "b", 2), (1, 12, "a", 4), (2, 10, "a", 1), (2, 11, "b", 1), (3, 12, "neither", None)]
    )
    assert not dawid_skene_applies(table)
    result = consensus(table)
    assert result.fit is None
    assert [result.as_json(i) for i in range(3)] == [
        {"more_hallucinated": "b", "strength": 2, "agreement": 0.6667, "method": "majority"},
        {"more_hallucinated": None, "strength": None, "agreement": 0.5, "method": "majority"},
        {"more_hallucinated": "neither", "strength": None, "agreement": 1.0, "method": "majority"},
    ]


def test_dawid_skene_needs_enough_shared_pairs_and_annotators():
    """The switch: DS_MIN_PAIRS pairs with two labels, and two annotators with DS_MIN_SHARED_LABELS on them."""
    assert DS_MIN_PAIRS <= DS_MIN_SHARED_LABELS  # two annotators on every shared pair meet both at once

    def two_annotators_on(n: int) -> LabelTable:
        return table_of([(pair, annotator, "a", 1) for pair in range(n) for annotator in (0, 1)])

    assert not dawid_skene_applies(two_annotators_on(DS_MIN_SHARED_LABELS - 1))
    assert dawid_skene_applies(two_annotators_on(DS_MIN_SHARED_LABELS))
    # Many labels from one annotator alone, plus a second on few pairs, are not enough.
    lone = [(pair, 0, "a", 1) for pair in range(100)] + [(pair, 1, "a", 1) for pair in range(5)]
    assert not dawid_skene_applies(table_of(lone))


# Agreement ------------------------------------------------------------------------------------------------

# Krippendorff's own example (the package's docstring): 3 coders × 15 units, values 1..4, nan missing.
NAN = np.nan
KNOWN_TABLE = [
    [NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
    [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
    [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4],
]


def table_from_reliability_data(data: list[list[float]], *, strengths: bool = False) -> LabelTable:
    """Coders become annotators and units pairs; value v is choice CHOICES[v-1] (with strength v if asked)."""
    labels = [
        (unit, coder, CHOICES[int(value) - 1], int(value) if strengths else None)
        for coder, row in enumerate(data)
        for unit, value in enumerate(row)
        if not np.isnan(value)
    ]
    return table_of(labels)


def test_alpha_equals_the_krippendorff_package_on_a_known_table():
    expected = krippendorff.alpha(reliability_data=KNOWN_TABLE, level_of_measurement="nominal")
    result = agreement.campaign_alpha(table_from_reliability_data(KNOWN_TABLE), level="nominal", scale=4)
    assert result.value == pytest.approx(expected)
    assert round(result.value, 6) == 0.691358
    assert result.pairs == 12  # units with two or more values


def test_ordinal_alpha_is_on_the_signed_strength():
    """a with strength s is −s, b is +s, both/neither 0: the package on those numbers gives the same alpha."""
    labels = [
        (1, 0, "a", 4), (1, 1, "a", 3), (1, 2, "b", 1),
        (2, 0, "b", 2), (2, 1, "b", 2), (2, 2, "both", None),
        (3, 0, "neither", None), (3, 1, "a", 1),
        (4, 0, "b", 4), (4, 1, "b", 3), (4, 2, "b", 4),
    ]  # fmt: skip
    table = table_of(labels)
    signed = agreement.signed_strength(table.choice, table.strength)
    assert signed.tolist() == [-4, -3, 1, 2, 2, 0, 0, -1, 4, 3, 4]
    data = np.full((3, 4), np.nan)
    data[table.annotator, table.pair] = signed
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert agreement.campaign_alpha(table, level="ordinal", scale=4).value == pytest.approx(expected)


def test_alpha_is_undefined_without_disagreement_or_overlap():
    assert agreement.campaign_alpha(table_of([(1, 0, "a", 1), (1, 1, "a", 2)]), level="nominal", scale=4).value is None
    assert agreement.campaign_alpha(table_of([(1, 0, "a", 1), (2, 1, "b", 2)]), level="nominal", scale=4).value is None


def test_annotator_alpha_is_against_the_others_leave_one_out_consensus():
    """Annotators 0 and 1 agree everywhere, 2 agrees too, 3 always says the opposite side.

    On each pair, the others' majority without annotator 0 is the true side (1 and 2 against 3), so 0
    matches its reference on every pair: alpha 1. Annotator 3's reference is the true side too, which 3
    never gives: alpha below 0.
    """
    sides = ["a", "b", "a", "b", "b", "a"]
    opposite = {"a": "b", "b": "a"}
    labels = [(pair, annotator, side, 2) for pair, side in enumerate(sides) for annotator in (0, 1, 2)]
    labels += [(pair, 3, opposite[side], 2) for pair, side in enumerate(sides)]
    alphas = agreement.annotator_alphas(table_of(labels), level="nominal", scale=4)
    assert alphas[0].value == pytest.approx(1.0) and alphas[0].pairs == len(sides)
    assert alphas[3].value < 0
    few = agreement.annotator_alphas(table_of(labels[:6]), level="nominal", scale=4)
    assert few[0].value is None  # two shared pairs: fewer than MIN_ANNOTATOR_PAIRS


def test_ordinal_reference_is_the_others_median_rounded_toward_zero():
    # Unit 0: others of the first row are -2 and +1 → median -0.5 → 0. Codes are signed + 4.
    unit = np.array([0, 0, 0])
    code = np.array([0, 2, 5])  # signed -4, -2, +1
    reference = agreement.others_reference(unit, code, n_values=9, level="ordinal")
    assert (reference - 4).tolist() == [0.0, -1.0, -3.0]  # (-2+1)/2 → 0, (-4+1)/2 → -1, (-4-2)/2 = -3


# Bias -----------------------------------------------------------------------------------------------------


def simulated_bias(n_labels: int = 120, seed: int = 3):
    """Three annotators on random pairs: 0 is fair, 1 flags whatever is shown left 90% of the time,
    2 always prefers the longer answer (flags the shorter one). Sides and lengths are random."""
    rng = np.random.default_rng(seed)
    rows = {"annotator": [], "choice": [], "shown_left": [], "len_a": [], "len_b": []}
    for annotator in range(3):
        for _ in range(n_labels):
            left = int(rng.integers(2))
            len_a, len_b = (int(n) for n in rng.integers(20, 200, size=2))
            if annotator == 1:
                choice = left if rng.random() < 0.9 else 1 - left
            elif annotator == 2:
                choice = 0 if len_a < len_b else 1
            else:
                choice = int(rng.integers(2))
            for key, value in zip(rows, (annotator, choice, left, len_a, len_b), strict=True):
                rows[key].append(value)
    return {key: np.array(values) for key, values in rows.items()}


def test_left_biased_and_longer_preferring_annotators_are_flagged_and_a_fair_one_is_not():
    data = simulated_bias()
    position, _ = bias.position_bias(data["annotator"], data["choice"], data["shown_left"], n_annotators=3)
    length, overall = bias.length_bias(data["annotator"], data["choice"], data["len_a"], data["len_b"], n_annotators=3)
    assert [test.flagged for test in position] == [False, True, False]
    assert [test.flagged for test in length] == [False, False, True]
    assert position[1].share == pytest.approx(0.9, abs=0.06)
    assert length[2].share == 1.0 and length[2].p_value < 1e-20
    assert overall.n == sum(test.n for test in length)


def test_both_neither_and_equal_lengths_do_not_count():
    annotator = np.zeros(4, dtype=int)
    choice = np.array([0, 2, 3, 1])  # a, both, neither, b
    position, _ = bias.position_bias(annotator, choice, np.array([0, 0, 0, 0]), n_annotators=1)
    assert (position[0].k, position[0].n) == (1, 2)
    length, _ = bias.length_bias(annotator, choice, np.array([5, 5, 5, 5]), np.array([9, 9, 9, 5]), n_annotators=1)
    assert (length[0].k, length[0].n) == (1, 1)  # the b label had equal lengths; a with a shorter: longer won


@pytest.mark.parametrize(
    "k,n,flagged",
    [(60, 100, False), (66, 100, True), (5200, 10000, False), (9, 10, False), (18, 20, True), (0, 0, False)],
    ids=["p≈0.06", "p<0.01 and 16 points", "significant but 2 points", "9 of 10: p≈0.02", "18 of 20", "none"],
)
def test_flag_rule_needs_significance_and_size(k, n, flagged):
    assert bias.share_test(k, n).flagged is flagged


def test_time_per_label_skips_missing_durations():
    times, overall = bias.label_times(
        np.array([0, 0, 0, 0, 0, 1]), np.array([1000, 2000, 3000, 4000, np.nan, np.nan]), n_annotators=3
    )
    assert (times[0].n, times[0].median_s, times[0].p90_s) == (4, 2.5, pytest.approx(3.7))
    assert times[1].median_s is None and times[2].n == 0
    assert overall.median_s == 2.5


def test_ordinal_alpha_survives_labels_above_a_lowered_strength_scale():
    """A lead may lower the scale after labels were given; those labels still count, on a wider domain."""
    table = LabelTable.from_columns([1, 1, 2, 2], [1, 2, 1, 2], ["a", "a", "b", "b"], [4, 3, 4, 4])
    assert agreement.campaign_alpha(table, level="ordinal", scale=2) == agreement.campaign_alpha(
        table, level="ordinal", scale=4
    )


def test_alpha_over_many_pairs_is_estimated_on_a_bounded_sample(monkeypatch):
    """Memory stays bounded on huge campaigns; the estimate stays close to alpha over every pair."""
    rng = np.random.default_rng(3)
    n = 3000
    truth = rng.integers(0, 2, n)
    choices = np.where(rng.random((n, 3)) < 0.8, truth[:, None], 1 - truth[:, None])
    table = LabelTable.from_columns(
        np.repeat(np.arange(n), 3), np.tile([1, 2, 3], n), [CHOICES[c] for c in choices.ravel()], [2.0] * (3 * n)
    )
    full = agreement.campaign_alpha(table, level="nominal", scale=4)
    monkeypatch.setattr(agreement, "MAX_ALPHA_UNITS", 1000)
    sampled = agreement.campaign_alpha(table, level="nominal", scale=4)
    assert sampled.pairs == full.pairs == n
    assert sampled.value != full.value and abs(sampled.value - full.value) < 0.05


def test_the_web_app_and_rewardlab_share_one_vocabulary_of_answers():
    assert tuple(Choice.values) == ANSWERS == CHOICES
