"""Krippendorff's alpha (the `krippendorff` package): nominal on the choice, ordinal on the signed strength.

The signed strength puts a label on one line from "a is much worse" to "b is much worse": `a` with
strength s is −s, `b` with strength s is +s, `both` and `neither` are 0. A pair is a unit, its labels
are the unit's values; alpha uses only pairs with at least two labels, and is undefined (None) when
they show fewer than two distinct values, since there is then no disagreement to measure against.
Above MAX_ALPHA_UNITS such pairs it is estimated on a fixed sample of them, to bound memory.

Per annotator, alpha compares the annotator with the others, leaving the annotator out: on every pair
the annotator labeled that someone else labeled too, the annotator's value is one coder and the
others' consensus is the second (nominal: the others' majority choice, no reference on a tie;
ordinal: the others' median signed strength, halves rounded toward 0). It is None below
`MIN_ANNOTATOR_PAIRS` such pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import krippendorff
import numpy as np

from annotate.quality.table import A, B, K, LabelTable

Level = Literal["nominal", "ordinal"]
MIN_ANNOTATOR_PAIRS = 5
MAX_ALPHA_UNITS = 20_000  # alpha over more pairs is estimated on a seeded sample (see `_bounded`)


@dataclass(frozen=True)
class Alpha:
    value: float | None
    pairs: int  # pairs (units) with at least two values, which alpha was computed on


def signed_strength(choice: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Return a → −strength, b → +strength, both/neither → 0 (NaN for an a/b label without a strength).

    >>> signed_strength(np.array([0, 1, 2, 3]), np.array([3.0, 2.0, np.nan, np.nan])).tolist()
    [-3.0, 2.0, 0.0, 0.0]
    """
    return np.where(choice == A, -strength, np.where(choice == B, strength, 0.0))


def alpha_of(unit: np.ndarray, code: np.ndarray, *, n_values: int, level: Level) -> Alpha:
    """Return alpha of values given as (unit, code) rows; codes index an ordered domain 0..n_values-1."""
    if len(unit) == 0:
        return Alpha(None, 0)
    n_units = int(unit.max()) + 1
    counts = np.bincount(unit * n_values + code, minlength=n_units * n_values).reshape(n_units, n_values)
    counts = counts[counts.sum(axis=1) >= 2]
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return Alpha(None, len(counts))
    value = krippendorff.alpha(
        value_counts=_bounded(counts), value_domain=np.arange(n_values), level_of_measurement=level
    )
    return Alpha(float(value), len(counts))


def _bounded(counts: np.ndarray) -> np.ndarray:
    """Keep at most MAX_ALPHA_UNITS units, a fixed seeded sample of them.

    The package builds (units × values × values) arrays, about 2 KB per pair on the ordinal strength
    scale: 640 MB at 333k pairs, in a web request or an export worker. A sample of 20k pairs estimates
    alpha to about ±0.005 (its standard error), far below any difference a lead acts on.
    """
    if len(counts) <= MAX_ALPHA_UNITS:
        return counts
    keep = np.sort(np.random.default_rng(0).choice(len(counts), MAX_ALPHA_UNITS, replace=False))
    return counts[keep]


def coded(table: LabelTable, *, level: Level, scale: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Return which labels have a value at this level, their codes, and how many codes there are.

    Nominal codes are the choices; ordinal codes are the signed strength shifted by `scale` to 0..2·scale.
    """
    if level == "nominal":
        return np.ones(len(table.choice), dtype=bool), table.choice, K
    signed = signed_strength(table.choice, table.strength)
    valid = ~np.isnan(signed)
    # Labels given before a lead lowered the campaign's strength scale lie outside it: stretch the domain to them.
    scale = max(scale, int(np.abs(signed[valid]).max(initial=0)))
    return valid, (signed[valid] + scale).astype(np.int64), 2 * scale + 1


def campaign_alpha(table: LabelTable, *, level: Level, scale: int) -> Alpha:
    """Return alpha over every pair with two or more labels."""
    valid, code, n_values = coded(table, level=level, scale=scale)
    return alpha_of(table.pair[valid], code, n_values=n_values, level=level)


def others_reference(unit: np.ndarray, code: np.ndarray, *, n_values: int, level: Level) -> np.ndarray:
    """Return per row the other rows of its unit summarised (majority or median code); NaN where undefined."""
    n_units = int(unit.max(initial=-1)) + 1
    counts = np.bincount(unit * n_values + code, minlength=n_units * n_values).reshape(n_units, n_values)
    others = counts[unit]
    others[np.arange(len(unit)), code] -= 1
    n_others = others.sum(axis=1)
    if level == "nominal":
        top = others.max(axis=1, initial=0)
        tie = (others == top[:, None]).sum(axis=1) > 1
        reference = others.argmax(axis=1).astype(float)
        return np.where(tie | (n_others == 0), np.nan, reference)
    cumulative = others.cumsum(axis=1)
    low = (cumulative > ((n_others - 1) // 2)[:, None]).argmax(axis=1)
    high = (cumulative > (n_others // 2)[:, None]).argmax(axis=1)
    centre = (n_values - 1) // 2  # the code of signed strength 0
    median = np.trunc((low + high) / 2 - centre) + centre
    return np.where(n_others == 0, np.nan, median)


def annotator_alphas(table: LabelTable, *, level: Level, scale: int) -> list[Alpha]:
    """Return, per annotator index, alpha between the annotator and the others' leave-one-out consensus."""
    valid, code, n_values = coded(table, level=level, scale=scale)
    annotator = table.annotator[valid]
    reference = others_reference(table.pair[valid], code, n_values=n_values, level=level)
    result = []
    for index in range(table.n_annotators):
        rows = np.flatnonzero((annotator == index) & ~np.isnan(reference))
        if len(rows) < MIN_ANNOTATOR_PAIRS:
            result.append(Alpha(None, len(rows)))
            continue
        units = np.tile(np.arange(len(rows)), 2)
        codes = np.concatenate([code[rows], reference[rows].astype(np.int64)])
        result.append(alpha_of(units, codes, n_values=n_values, level=level))
    return result


def consensus_agreement(table: LabelTable, consensus_choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per annotator how many labels matched the consensus, out of how many could.

    Only labels on pairs with two or more labels and a consensus count: a pair's only label is its own
    consensus and says nothing about the annotator.
    """
    eligible = (table.labels_per_pair()[table.pair] >= 2) & (consensus_choice[table.pair] >= 0)
    matched = eligible & (table.choice == consensus_choice[table.pair])
    n = np.bincount(table.annotator[eligible], minlength=table.n_annotators)
    k = np.bincount(table.annotator[matched], minlength=table.n_annotators)
    return k, n
