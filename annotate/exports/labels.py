"""Each pair's label in a snapshot, decided from the labels that existed at its cutoff.

`Pair.consensus` is rewritten whenever consensus is refreshed, so a snapshot does not read it: it computes
the same consensus (`annotate.quality.consensus`: Dawid–Skene once labels allow, else majority) from the
human labels up to the cutoff and in the date range. That makes a snapshot's rows a function of what it
recorded, whenever the worker runs it. Per pair, in this order:

1. a gold pair takes its known answer (as rewardlab's training does: the truth wins); its strength is the
   human consensus strength when the humans chose the same side, its agreement the share of human labels
   that did (1.0 with none);
2. a pair with human labels takes their consensus (no choice on a tie);
3. with prior labels counted (`labels="with_priors"`) and no human label, the majority of its prior labels.

The labels are read once into compact arrays (a few numbers per label), never into row objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import F, IntegerField, QuerySet, Value

from annotate.quality.consensus import METHOD_DAWID_SKENE, METHOD_MAJORITY, NO_CHOICE, consensus
from annotate.quality.table import CHOICES, CODE, LabelTable

SOURCE_HUMAN, SOURCE_PRIOR, SOURCE_GOLD = "human", "prior", "gold"
CHUNK = 5000


@dataclass(frozen=True)
class Verdict:
    """A pair's label in the snapshot and how sure it is; `more_hallucinated` is None on a tie."""

    more_hallucinated: str | None
    strength: int | None
    agreement: float
    n_labels: int
    source: str  # SOURCE_HUMAN, SOURCE_PRIOR or SOURCE_GOLD
    method: str  # how it was decided: dawid-skene, majority or gold


def label_table(labels: QuerySet, *, rater: str | None = "annotator_id") -> LabelTable:
    """Read labels (pair, rater, choice, strength) into a LabelTable, streaming the query.

    `rater=None` puts every label under one rater: prior labels have no annotator.
    """
    who = Value(0, output_field=IntegerField()) if rater is None else F(rater)
    rows = labels.order_by().values_list("pair_id", who, "more_hallucinated", "strength")
    return LabelTable.from_rows(rows.iterator(chunk_size=CHUNK))


class Votes:
    """The consensus of one kind of labels (human or prior), looked up by pair id."""

    def __init__(self, table: LabelTable) -> None:
        self.table = table
        result = consensus(table)
        self.choice, self.strength, self.agreement = result.choice, result.strength, result.agreement
        self.dawid_skene = result.dawid_skene
        self.count = table.labels_per_pair()
        self.votes = table.votes()

    def index(self, pair_id: int) -> int | None:
        """Return the pair's row in the arrays, or None when it has no label here."""
        ids = self.table.pair_ids
        at = int(np.searchsorted(ids, pair_id))
        return at if at < len(ids) and ids[at] == pair_id else None

    def verdict(self, at: int, *, source: str) -> Verdict:
        choice, strength = int(self.choice[at]), self.strength[at]
        return Verdict(
            more_hallucinated=None if choice == NO_CHOICE else CHOICES[choice],
            strength=None if np.isnan(strength) else int(strength),
            agreement=round(float(self.agreement[at]), 4),
            n_labels=int(self.count[at]),
            source=source,
            method=METHOD_DAWID_SKENE if self.dawid_skene[at] else METHOD_MAJORITY,
        )

    def gold_verdict(self, at: int | None, answer: str) -> Verdict:
        """Return the known answer, with what the human labels (if any) said about it."""
        if at is None:
            return Verdict(answer, None, 1.0, 0, SOURCE_GOLD, SOURCE_GOLD)
        human = self.verdict(at, source=SOURCE_HUMAN)
        agreement = float(self.votes[at, CODE[answer]]) / human.n_labels
        strength = human.strength if human.more_hallucinated == answer else None
        return Verdict(answer, strength, round(agreement, 4), human.n_labels, SOURCE_GOLD, SOURCE_GOLD)


class Verdicts:
    """Every pair's label at the cutoff: gold, else human consensus, else (when asked) prior majority."""

    def __init__(self, *, human: Votes, priors: Votes | None) -> None:
        self.human = human
        self.priors = priors

    def of(self, pair_id: int, gold_answer: str) -> Verdict | None:
        """Return the pair's verdict, or None when nothing labels it."""
        at = self.human.index(pair_id)
        if gold_answer:
            return self.human.gold_verdict(at, gold_answer)
        if at is not None:
            return self.human.verdict(at, source=SOURCE_HUMAN)
        at = self.priors.index(pair_id) if self.priors is not None else None
        return None if at is None else self.priors.verdict(at, source=SOURCE_PRIOR)
