"""Human labels as parallel numpy arrays: the one input shape of consensus, agreement and bias."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rewardlab.answers import ANSWERS

# The four answers to "which is more hallucinated?", in the order every array here indexes them.
CHOICES = ANSWERS
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
    def from_rows(cls, rows: Iterable[tuple[int, int, str, int | None]]) -> LabelTable:
        """Build the table from (pair id, annotator id, choice, strength) rows, e.g. a streamed query.

        The rows go into typed buffers, not Python lists (a float object per strength), so a million labels
        cost their arrays and no more (issue 6's export of 1M labels).
        """
        pairs, annotators, codes, strengths = array("q"), array("q"), array("b"), array("d")
        for pair_id, annotator_id, choice, strength in rows:
            pairs.append(pair_id)
            annotators.append(annotator_id)
            codes.append(CODE[choice])
            strengths.append(np.nan if strength is None else strength)
        unique_pairs, pair = np.unique(np.frombuffer(pairs, dtype=np.int64), return_inverse=True)
        unique_annotators, annotator = np.unique(np.frombuffer(annotators, dtype=np.int64), return_inverse=True)
        return cls(
            pair=pair.reshape(-1),
            annotator=annotator.reshape(-1),
            choice=np.frombuffer(codes, dtype=np.int8).astype(np.int64),
            strength=np.frombuffer(strengths, dtype=np.float64),
            pair_ids=unique_pairs,
            annotator_ids=unique_annotators,
        )

    @classmethod
    def from_columns(
        cls,
        pair_ids: Sequence[int],
        annotator_ids: Sequence[int],
        choices: Sequence[str],
        strengths: Sequence[int | None],
    ) -> LabelTable:
        """Build the table from columns (pair ids, annotator ids, choices, strengths), as tests write them."""
        return cls.from_rows(zip(pair_ids, annotator_ids, choices, strengths, strict=True))

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
