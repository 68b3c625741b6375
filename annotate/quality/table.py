"""Human labels as parallel numpy arrays: the one input shape of consensus, agreement and bias."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The four answers to "which is more hallucinated?", in the order every array here indexes them.
CHOICES = ("a", "b", "both", "neither")
A, B, BOTH, NEITHER = range(len(CHOICES))
K = len(CHOICES)
CODE = {choice: index for index, choice in enumerate(CHOICES)}


@dataclass(frozen=True)
class LabelTable:
    """One entry per label; `pair` and `annotator` index into `pair_ids` and `annotator_ids`.

    >>> table = LabelTable.from_columns([7, 7, 9], [1, 2, 1], ["a", "b", "neither"], [3, 2, None])
    >>> table.pair.tolist(), table.annotator.tolist(), table.choice.tolist()
    ([0, 0, 1], [0, 1, 0], [0, 1, 3])
    """

    pair: np.ndarray  # (n,) int
    annotator: np.ndarray  # (n,) int
    choice: np.ndarray  # (n,) int, index into CHOICES
    strength: np.ndarray  # (n,) float, NaN for both/neither
    pair_ids: np.ndarray  # (P,) the database ids, sorted
    annotator_ids: np.ndarray  # (A,) the database ids, sorted

    @classmethod
    def from_columns(
        cls,
        pair_ids: Sequence[int],
        annotator_ids: Sequence[int],
        choices: Sequence[str],
        strengths: Sequence[int | None],
    ) -> LabelTable:
        """Build the table from database columns (pair id, annotator id, choice, strength per label)."""
        unique_pairs, pair = np.unique(np.asarray(pair_ids, dtype=np.int64), return_inverse=True)
        unique_annotators, annotator = np.unique(np.asarray(annotator_ids, dtype=np.int64), return_inverse=True)
        return cls(
            pair=pair.reshape(-1),
            annotator=annotator.reshape(-1),
            choice=np.array([CODE[choice] for choice in choices], dtype=np.int64),
            strength=np.array([np.nan if s is None else s for s in strengths], dtype=float),
            pair_ids=unique_pairs,
            annotator_ids=unique_annotators,
        )

    @property
    def n_pairs(self) -> int:
        return len(self.pair_ids)

    @property
    def n_annotators(self) -> int:
        return len(self.annotator_ids)

    def votes(self) -> np.ndarray:
        """Return how many labels each pair got per choice, shape (P, K)."""
        return np.bincount(self.pair * K + self.choice, minlength=self.n_pairs * K).reshape(self.n_pairs, K)

    def labels_per_pair(self) -> np.ndarray:
        """Return how many labels each pair got, shape (P,)."""
        return np.bincount(self.pair, minlength=self.n_pairs)
