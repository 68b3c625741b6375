"""The dataset card's Krippendorff's alpha, in memory that grows by a few numbers per pair, not V² of them.

`annotate.quality.agreement.campaign_alpha` hands the (pairs × values) counts to the `krippendorff`
package, whose `_coincidences` builds (pairs, V, V) arrays, three at once: with the ordinal strength of a
4-point scale (V = 9) that is ~2 KB per pair, 640 MB for a 333k-pair campaign, most of an export
worker's memory (issue 6, bench/export.py). Alpha depends on the labels only through the (V, V)
coincidence matrix, which is a sum over pairs (Krippendorff, "Computing Krippendorff's Alpha-Reliability",
2011):

    o[c, k] = Σ_u (n_uc · n_uk − [c = k] · n_uc) / (m_u − 1)        over pairs u with m_u ≥ 2 values

so it is computed here as (V, pairs) @ (pairs, V) products over blocks of pairs, and alpha from it as the
package does:

    n_c = Σ_k o[c, k],   e[c, k] = (n_c · n_k − [c = k] · n_c) / (n − 1),   α = 1 − Σ o·δ² / Σ e·δ²

with δ² = [c ≠ k] (nominal) or (Σ_{g=c..k} n_g − (n_c + n_k) / 2)² (ordinal). The value equals
`campaign_alpha`'s to rounding.
"""

from __future__ import annotations

import numpy as np

from annotate.quality.agreement import Alpha, Level, coded
from annotate.quality.table import LabelTable

BLOCK = 65536  # pairs per step of the coincidence sum


def coincidences(counts: np.ndarray) -> np.ndarray:
    """Return the (V, V) coincidence matrix of per-pair value counts (pairs, V); pairs with fewer than 2 add nothing."""
    n_values = counts.shape[1]
    observed = np.zeros((n_values, n_values))
    for start in range(0, len(counts), BLOCK):  # blocks, so the float copies stay a few MB at any campaign size
        block = counts[start : start + BLOCK]
        m = block.sum(axis=1)
        weight = np.where(m >= 2, 1.0 / np.maximum(m - 1, 1), 0.0)
        weighted = block.T * weight  # (V, block)
        observed += weighted @ block - np.diag(weighted.sum(axis=1))
    return observed


def distances(n_v: np.ndarray, level: Level) -> np.ndarray:
    """Return δ² between every two codes, for codes 0..V-1 in order (the `krippendorff` package's metrics)."""
    codes = np.arange(len(n_v))
    if level == "nominal":
        return (codes[:, None] != codes[None, :]).astype(float)
    low, high = np.minimum.outer(codes, codes), np.maximum.outer(codes, codes)
    cumulative = np.concatenate([[0.0], np.cumsum(n_v)])
    between = cumulative[high + 1] - cumulative[low]
    return (between - (n_v[low] + n_v[high]) / 2) ** 2


def campaign_alpha(table: LabelTable, *, level: Level, scale: int) -> Alpha:
    """Return `annotate.quality.agreement.campaign_alpha(table, ...)`, alpha over every pair with two or more labels."""
    valid, code, n_values = coded(table, level=level, scale=scale)
    index = table.pair[valid] * n_values
    index += code
    counts = np.bincount(index, minlength=table.n_pairs * n_values).reshape(-1, n_values)
    del index
    pairs = int(np.count_nonzero(counts.sum(axis=1) >= 2))
    observed = coincidences(counts)
    n_v = observed.sum(axis=0)  # = per value, the labels on pairs with two or more
    if np.count_nonzero(n_v) < 2:
        return Alpha(None, pairs)
    expected = (np.outer(n_v, n_v) - np.diag(n_v)) / (n_v.sum() - 1)
    delta = distances(n_v, level)
    return Alpha(float(1 - (observed * delta).sum() / (expected * delta).sum()), pairs)
