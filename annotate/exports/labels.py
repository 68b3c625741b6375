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

Memory stays flat however many labels there are: the annotators' reliabilities are fitted once, on at
most FIT_MAX_LABELS labels (every label of a campaign up to that size, else those of a hashed 1/n of the pairs),
and the pairs are then decided a block of BLOCK_LABELS labels at a time, in the pair-id order in which
the rows are written. Up to FIT_MAX_LABELS labels, that is exactly the consensus the campaign shows.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from django.db.models import BigIntegerField, F, IntegerField, QuerySet, Value
from django.db.models.functions import Mod

from annotate.exports.stream import query_rows
from annotate.models import Pair
from annotate.quality.consensus import (
    consensus_with,
    reliability_fit,
)
from annotate.quality.table import CODE, LabelTable

SOURCE_HUMAN, SOURCE_PRIOR, SOURCE_GOLD = "human", "prior", "gold"
CHUNK = 5000
FIT_MAX_LABELS = 200_000  # enough to pin down every active annotator's 4×4 confusion matrix many times over
BLOCK_LABELS = 20_000
LAST_PAIR = sys.maxsize
HASH_MULTIPLIER, HASH_SLOTS = 2_654_435_761, 2**32  # the product fits a bigint for pair ids below 3.4e9


class Verdict(NamedTuple):
    """A pair's label in the snapshot and how sure it is; `more_hallucinated` is None on a tie."""

    more_hallucinated: str | None
    strength: int | None
    agreement: float
    n_labels: int
    source: str  # SOURCE_HUMAN, SOURCE_PRIOR or SOURCE_GOLD
    method: str  # how it was decided: dawid-skene, majority or gold


def label_rows(labels: QuerySet, *, rater: str | None = "annotator_id") -> QuerySet:
    """Return labels as (pair id, rater, choice, strength) rows in pair-id order.

    `rater=None` puts every label under one rater: prior labels have no annotator.
    """
    who = Value(0, output_field=IntegerField()) if rater is None else F(rater)
    return labels.order_by("pair_id").values_list("pair_id", who, "more_hallucinated", "strength")


def fit_sample(labels: QuerySet, *, rater: str | None) -> LabelTable:
    """Read the labels reliabilities are fitted on: all of them up to FIT_MAX_LABELS, else every n-th pair's."""
    stride = -(-labels.count() // FIT_MAX_LABELS)
    if stride > 1:
        # Knuth's multiplicative hash of the pair id: a pseudo-random 1/stride of the pairs, whatever
        # pattern the ids follow (every other pair imported from one source, say).
        big = BigIntegerField()
        slot = Mod(F("pair_id") * Value(HASH_MULTIPLIER, big), Value(HASH_SLOTS, big), output_field=big)
        labels = labels.alias(slot=slot).filter(slot__lt=HASH_SLOTS // stride)
    return LabelTable.from_rows(query_rows(label_rows(labels, rater=rater).order_by(), chunk=CHUNK))


class Votes:
    """The consensus of one kind of labels (human or prior), looked up by pair id in increasing order.

    Pairs are decided a block at a time with one reliability fit (the module docstring), so only one
    block's labels are ever in memory.
    """

    def __init__(self, labels: QuerySet, *, rater: str | None = "annotator_id") -> None:
        self.rows = label_rows(labels, rater=rater)
        self.sample = fit_sample(labels, rater=rater)  # also what the card's alpha is computed on
        self.fit = reliability_fit(self.sample)
        self.first = self.last = -1  # the pair ids the loaded block covers
        self._decide([])

    def index(self, pair_id: int) -> int | None:
        """Return the pair's row in the block's arrays, or None when it has no label here."""
        if pair_id < self.first:
            raise ValueError(f"pair {pair_id} asked for after pair {self.first}: ask in increasing pair id")
        if pair_id > self.last:
            self._load(pair_id)
        return self.position.get(pair_id)

    def _load(self, pair_id: int) -> None:
        """Read the next block: up to BLOCK_LABELS labels from `pair_id` on, ending at a whole pair."""
        # The second bound lets PostgreSQL start its scan of the pairs there too, not at the campaign's first pair.
        block = self.rows.filter(pair_id__gte=pair_id, pair__in=Pair.objects.filter(pk__gte=pair_id))[:BLOCK_LABELS]
        rows = list(query_rows(block, chunk=BLOCK_LABELS))
        self.first, self.last = pair_id, LAST_PAIR
        if len(rows) == BLOCK_LABELS:
            self.last = rows[-1][0] - 1  # the last pair's labels may go on past the block
            whole = [row for row in rows if row[0] <= self.last]
            rows = whole or list(query_rows(self.rows.filter(pair_id=rows[0][0])))  # one pair past the block
            self.last = max(self.last, rows[-1][0])
        self._decide(rows)

    def _decide(self, rows: list[tuple]) -> None:
        """Decide the block's pairs, kept as plain lists: a snapshot asks for each pair once, in order."""
        table = LabelTable.from_rows(rows)
        self.position = {pair_id: at for at, pair_id in enumerate(table.pair_ids.tolist())}
        self.consensus = consensus_with(table, self.fit).as_json_all()
        self.count = table.labels_per_pair().tolist()
        self.votes = table.votes()

    def verdict(self, at: int, *, source: str) -> Verdict:
        """The pair's consensus as `Pair.consensus` stores it (`Consensus.as_json`), with its count and source."""
        return Verdict(**self.consensus[at], n_labels=self.count[at], source=source)

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
        """Return the pair's verdict, or None when nothing labels it; ask in increasing pair id."""
        at = self.human.index(pair_id)
        if gold_answer:
            return self.human.gold_verdict(at, gold_answer)
        if at is not None:
            return self.human.verdict(at, source=SOURCE_HUMAN)
        at = self.priors.index(pair_id) if self.priors is not None else None
        return None if at is None else self.priors.verdict(at, source=SOURCE_PRIOR)
