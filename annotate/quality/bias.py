"""Bias diagnostics: position bias, length (style) bias and time per label (DESIGN.md, "Quality"; DT2IT).

Only a/b labels count for the two biases: `both` and `neither` pick no side.

- Position: the side shown on the left is drawn at random per assignment, so an unbiased annotator
  flags the left answer as more hallucinated about half the time. The share is tested against 0.5.
- Length: among labels on pairs whose answers differ in length (characters), how often the longer
  answer was preferred, i.e. the shorter one flagged as more hallucinated. Also tested against 0.5:
  a flag says the labels lean on length; whether the data justify the lean is for the lead to judge,
  with the campaign's overall rate (drawn beside each annotator's) as the reference.

A share is flagged when a two-sided exact binomial test gives p < `FLAG_P_VALUE` and the share is at
least `FLAG_MIN_EFFECT` away from 0.5: significant and large enough to matter, so a big campaign does
not flag a 52% share and a handful of labels does not flag anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from annotate.quality.table import A, B

FLAG_P_VALUE = 0.01
FLAG_MIN_EFFECT = 0.15
NULL_SHARE = 0.5
P90 = 90


@dataclass(frozen=True)
class ShareTest:
    """`k` of `n` labels showed the behaviour; `share` and `p_value` are None without labels."""

    k: int
    n: int
    share: float | None
    p_value: float | None
    flagged: bool


@dataclass(frozen=True)
class Timing:
    n: int  # labels with a recorded duration
    median_s: float | None
    p90_s: float | None


def share_test(k: int, n: int) -> ShareTest:
    """Test `k` of `n` against a fair coin and flag it by the module's rule.

    >>> share_test(18, 20).flagged, share_test(11, 20).flagged, share_test(0, 0).share
    (True, False, None)
    """
    if n == 0:
        return ShareTest(k=0, n=0, share=None, p_value=None, flagged=False)
    share = k / n
    p_value = float(binomtest(k, n, NULL_SHARE).pvalue)
    flagged = p_value < FLAG_P_VALUE and abs(share - NULL_SHARE) >= FLAG_MIN_EFFECT
    return ShareTest(k=k, n=n, share=share, p_value=p_value, flagged=flagged)


def _per_annotator(annotator: np.ndarray, hit: np.ndarray, counted: np.ndarray, n_annotators: int):
    """Return a ShareTest per annotator index and one over everybody, of `hit` among `counted` labels."""
    n = np.bincount(annotator[counted], minlength=n_annotators)
    k = np.bincount(annotator[counted & hit], minlength=n_annotators)
    per = [share_test(int(k[i]), int(n[i])) for i in range(n_annotators)]
    return per, share_test(int(k.sum()), int(n.sum()))


def position_bias(
    annotator: np.ndarray, choice: np.ndarray, shown_left: np.ndarray, *, n_annotators: int
) -> tuple[list[ShareTest], ShareTest]:
    """Return per annotator and overall how often the answer shown on the left was flagged more hallucinated.

    `shown_left` holds A or B per label: which canonical side was on the left.
    """
    picked_side = (choice == A) | (choice == B)
    return _per_annotator(annotator, choice == shown_left, picked_side, n_annotators)


def length_bias(
    annotator: np.ndarray, choice: np.ndarray, len_a: np.ndarray, len_b: np.ndarray, *, n_annotators: int
) -> tuple[list[ShareTest], ShareTest]:
    """Return per annotator and overall how often the longer answer was preferred (the shorter one flagged)."""
    counted = ((choice == A) | (choice == B)) & (len_a != len_b)
    shorter_flagged = ((choice == A) & (len_a < len_b)) | ((choice == B) & (len_b < len_a))
    return _per_annotator(annotator, shorter_flagged, counted, n_annotators)


def _timing(seconds: np.ndarray) -> Timing:
    if len(seconds) == 0:
        return Timing(n=0, median_s=None, p90_s=None)
    return Timing(n=len(seconds), median_s=float(np.median(seconds)), p90_s=float(np.percentile(seconds, P90)))


def label_times(annotator: np.ndarray, duration_ms: np.ndarray, *, n_annotators: int) -> tuple[list[Timing], Timing]:
    """Return the median and 90th percentile seconds per label, per annotator and overall; NaN durations skip."""
    known = ~np.isnan(duration_ms)
    who, seconds = annotator[known], duration_ms[known] / 1000.0
    order = np.argsort(who, kind="stable")
    bounds = np.cumsum(np.bincount(who, minlength=n_annotators))[:-1]
    groups = np.split(seconds[order], bounds) if n_annotators else []
    return [_timing(group) for group in groups], _timing(seconds)
