"""Evaluation metrics, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardlab.metrics import (
    accuracy_by_group,
    calibration_bins,
    evaluate,
    expected_calibration_error,
    log_loss,
    pairwise_accuracy,
)

# Labels name the MORE hallucinated answer; p is P(a is better).
# 0.9/"b": a better, p > 0.5, right.  0.2/"a": b better, p < 0.5, right.  0.5/"b": a tie, wrong.
# 0.6/"both": not counted.  Accuracy = 2/3.
P = [0.9, 0.2, 0.5, 0.6]
LABELS = ["b", "a", "b", "both"]

# Two bins, [0.5, 0.75) and [0.75, 1]:
#   p     label  confidence  right   bin
#   0.9   b      0.9         yes     high
#   0.2   a      0.8         yes     high
#   0.6   a      0.6         no      low   (leans to a, but a is the more hallucinated)
#   0.3   a      0.7         yes     low
#   0.55  b      0.55        yes     low
#   0.4   both   -           -       -     (not counted)
# low:  n = 3, confidence (0.6 + 0.7 + 0.55) / 3 = 0.61667, accuracy 2/3 = 0.66667, gap 0.05
# high: n = 2, confidence (0.9 + 0.8) / 2 = 0.85, accuracy 1, gap 0.15
# ECE = 3/5 · 0.05 + 2/5 · 0.15 = 0.03 + 0.06 = 0.09
ECE_P = [0.9, 0.2, 0.6, 0.3, 0.55, 0.4]
ECE_LABELS = ["b", "a", "a", "a", "b", "both"]


def test_pairwise_accuracy_skips_both_and_neither_and_counts_ties_wrong():
    assert pairwise_accuracy(np.array(P), LABELS) == pytest.approx(2 / 3)
    assert pairwise_accuracy([0.5, 0.5], ["a", "b"]) == 0.0


def test_metrics_are_nan_without_a_or_b_labels():
    for p, labels in (([0.7, 0.1], ["both", "neither"]), ([], [])):
        assert math.isnan(pairwise_accuracy(p, labels))
        assert math.isnan(expected_calibration_error(p, labels))
        assert math.isnan(log_loss(p, labels))


def test_ece_with_two_bins_matches_the_hand_computation():
    bins = calibration_bins(ECE_P, ECE_LABELS, n_bins=2)
    assert [(b["lo"], b["hi"], b["n"]) for b in bins] == [(0.5, 0.75, 3), (0.75, 1.0, 2)]
    assert bins[0]["confidence"] == pytest.approx(1.85 / 3)
    assert bins[0]["accuracy"] == pytest.approx(2 / 3)
    assert (bins[1]["confidence"], bins[1]["accuracy"]) == (pytest.approx(0.85), 1.0)
    assert expected_calibration_error(ECE_P, ECE_LABELS, n_bins=2) == pytest.approx(0.09)


def test_bins_are_half_open_with_the_last_closed_and_empty_bins_are_nan():
    # confidences 0.5 (p = 0.5), 0.75 (p = 0.25) and 1.0 (p = 1): 0.75 opens the upper bin, 1.0 closes it.
    bins = calibration_bins([0.5, 0.25, 1.0], ["a", "a", "b"], n_bins=2)
    assert [b["n"] for b in bins] == [1, 2]
    bins = calibration_bins([0.95], ["b"], n_bins=10)
    assert [b["n"] for b in bins] == [0] * 9 + [1]
    assert math.isnan(bins[0]["accuracy"]) and math.isnan(bins[0]["confidence"])


def test_perfectly_calibrated_predictions_have_zero_ece():
    # Confidence 0.75 in one bin of four pairs, three right: accuracy 0.75 = confidence.
    assert expected_calibration_error([0.75, 0.75, 0.75, 0.25], ["b", "b", "b", "b"], n_bins=2) == 0.0


def test_log_loss_matches_the_hand_computation_and_is_finite_when_certain_and_wrong():
    # y = 1 for "b" (a better), 0 for "a": −(ln 0.8 + ln(1 − 0.25)) / 2 = (0.22314 + 0.28768) / 2 = 0.25541
    assert log_loss([0.8, 0.25, 0.3], ["b", "a", "neither"]) == pytest.approx(0.255413, abs=1e-6)
    # p = 0 for a pair where a is better is clipped to 1e-7: −ln(1e-7) = 16.118
    assert log_loss([0.0], ["b"]) == pytest.approx(16.118, abs=1e-3)


def test_accuracy_by_group_is_sorted_and_puts_none_under_unknown():
    # spatial: 0.9/b right, 0.5/b tie wrong -> 1/2.  counting: 0.2/a right -> 1/1.  unknown: only "both".
    result = accuracy_by_group(P, LABELS, ["spatial", "counting", "spatial", None])
    assert list(result) == ["counting", "spatial", "unknown"]
    assert result["counting"] == {"accuracy": 1.0, "n": 1}
    assert result["spatial"] == {"accuracy": 0.5, "n": 2}
    assert result["unknown"]["n"] == 0 and math.isnan(result["unknown"]["accuracy"])


def test_evaluate_composes_the_metrics():
    # The text-only twin gets 0.9/b right, 0.2/a wrong (0.7 leans to a), 0.5/b wrong (0.4 leans to b): 1/3.
    result = evaluate(P, LABELS, text_only_p=[0.9, 0.7, 0.4, 0.5], groups=["x", "y", "x", "y"])
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["n"] == 3
    assert result["ece"] == pytest.approx(expected_calibration_error(P, LABELS))
    assert result["log_loss"] == pytest.approx(log_loss(P, LABELS))
    assert result["text_only_accuracy"] == pytest.approx(1 / 3)
    assert list(result["accuracy_by_qtype"]) == ["x", "y"]
    assert len(result["calibration"]) == 10
    assert set(evaluate(P, LABELS)) == {"accuracy", "n", "ece", "log_loss", "calibration"}


@pytest.mark.parametrize(
    "p,labels,message",
    [
        ([0.5], ["a", "b"], "one probability per label"),
        ([1.5], ["a"], "1.5"),
        ([float("nan")], ["a"], "nan"),
        ([0.5], ["c"], "'c'"),
    ],
)
def test_invalid_inputs_are_rejected(p, labels, message):
    with pytest.raises(ValueError, match=message):
        pairwise_accuracy(p, labels)


def test_group_count_must_match():
    with pytest.raises(ValueError, match="one group per label"):
        accuracy_by_group(P, LABELS, ["x"])
