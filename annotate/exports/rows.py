"""The rows a snapshot is made of, streamed from the database: one per kept pair, or one per annotation.

Both sources read through a server-side cursor in id order (`annotate.exports.stream`) and yield immutable
rows, so memory holds one chunk of the query, never the campaign. A row's `split` is drawn from a hash of
its image's SHA-256, not of the pair or the item: every item showing one image lands on the same side, so
no item and no image is ever in both train and test, and an image lands on the same side in every snapshot
with the same test share.

A `Spec` is everything the rows depend on, read from the snapshot's record (filters, cutoff, model run,
settings): the same spec gives the same rows, in the same order, whenever it is read.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.contrib.postgres.aggregates import JSONBAgg
from django.db.models import Exists, FilteredRelation, JSONField, OuterRef, Q, QuerySet, Subquery

from annotate.exports.filters import ExportFilters
from annotate.exports.jsontext import loads
from annotate.exports.labels import Verdict, Verdicts, Votes
from annotate.exports.stream import query_rows
from annotate.models import Annotation, Pair, PriorLabel
from annotate.selectors import pseudonym
from rewardlab.labels import label_margin

# The active model's scores on each row (API.md, "Model scores on a pair"), null without a model run;
# its SFC `weight` becomes the row's weight instead.
SCORE_FIELDS = ("p_a_better", "entropy", "mutual_info", "text_only_p_a_better", "shortcut_score", "noise_score")
SPLIT_TRAIN, SPLIT_TEST = "train", "test"
IMAGES_DIR = "images"
# Pairs read between two progress reports.
PROGRESS_EVERY = 500
# Item and response columns of a pair, as (row key, path from Pair); annotations read them through `pair__`.
PAIR_COLUMNS = (
    ("pair_id", "id"),
    ("gold_answer", "gold_answer"),
    ("external_id", "item__external_id"),
    ("prompt", "item__prompt"),
    ("facts", "item__facts"),
    ("meta", "item__meta"),
    ("image_sha256", "item__image__sha256"),
    ("image_file", "item__image__file"),
    ("a_id", "a__external_id"),
    ("a_text", "a__text"),
    ("a_model", "a__model"),
    ("b_id", "b__external_id"),
    ("b_text", "b__text"),
    ("b_model", "b__model"),
)
ANNOTATION_COLUMNS = (
    ("annotator_id", "annotator_id"),
    ("more_hallucinated", "more_hallucinated"),
    ("strength", "strength"),
    ("hallucination_types", "hallucination_types"),
    ("spans", "spans"),
    ("rationale", "rationale"),
    ("shown_left", "shown_left"),
    ("duration_ms", "duration_ms"),
    ("created_at", "created_at"),
)
# The JSON columns among PAIR_COLUMNS and ANNOTATION_COLUMNS.
JSON_KEYS = frozenset({"facts", "meta", "hallucination_types", "spans"})
ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class Cutoff:
    """What existed when the snapshot was asked for: later labels, priors and pairs never enter it."""

    at: datetime
    annotation: int  # the campaign's newest annotation id then (0: none)
    prior: int
    pair: int
    score: int  # the active run's newest pair score: it may still score pairs imported just before

    def as_json(self) -> dict:
        return {
            "at": self.at.isoformat(),
            "annotation": self.annotation,
            "prior": self.prior,
            "pair": self.pair,
            "score": self.score,
        }

    @classmethod
    def from_json(cls, data: dict) -> Cutoff:
        return cls(datetime.fromisoformat(data["at"]), data["annotation"], data["prior"], data["pair"], data["score"])


@dataclass(frozen=True)
class Spec:
    """Everything a snapshot's rows depend on."""

    campaign_id: int
    filters: ExportFilters
    cutoff: Cutoff
    run_id: int | None  # the active model when the snapshot was asked for
    noise_threshold: float  # noise_score at which a pair counts as suspected noise
    margins: tuple[float, ...]  # BT margin per strength 1..S
    prior_trust: float  # a prior label's weight relative to a human one


class Answer(NamedTuple):
    id: str
    text: str
    model: str


class Item(NamedTuple):
    external_id: str
    prompt: str
    image: str  # the member name in the snapshot: images/<sha256>.<ext>
    image_file: str  # the storage name to copy it from
    facts: dict
    meta: dict
    split: str


class PairRow(NamedTuple):
    """A kept pair with its label: what every paired format and `kto` are made from.

    Rows, and the items, answers and verdicts in them, are named tuples: immutable like frozen dataclasses,
    and built several times faster, which a snapshot of a million rows notices.
    """

    pair_id: int
    item: Item
    a: Answer
    b: Answer
    verdict: Verdict
    margin: float
    weight: float
    scores: dict[str, float | None]
    spans: list[dict]  # every span the pair's human labels marked (read only for formats that show them)


class AnnotationRow(NamedTuple):
    """One human label of a kept pair, as the `annotations` format shows it."""

    pair_id: int
    item: Item
    a: Answer
    b: Answer
    verdict: Verdict  # the pair's, which the filters judged
    gold_answer: str
    more_hallucinated: str
    strength: int | None
    hallucination_types: list
    spans: list
    rationale: str
    annotator: str  # pseudonymous, per campaign (selectors.pseudonym)
    shown_left: str
    duration_ms: int | None
    created_at: datetime


def split_of(image_sha256: str, test_share: float) -> str:
    """Return the split of an image's items: test when its hash falls below `test_share`, stable across snapshots."""
    digest = hashlib.sha256(f"split:{image_sha256}".encode()).digest()
    return SPLIT_TEST if int.from_bytes(digest[:8], "big") / 2**64 < test_share else SPLIT_TRAIN


def human_labels(spec: Spec, labels: QuerySet[Annotation] | None = None) -> QuerySet[Annotation]:
    """Return the labels up to the cutoff and in the filters' date range: the campaign's, or those of `labels`."""
    if labels is None:
        labels = Annotation.objects.filter(pair__campaign_id=spec.campaign_id)
    labels = labels.filter(pk__lte=spec.cutoff.annotation)
    if spec.filters.labeled_from:
        labels = labels.filter(created_at__date__gte=spec.filters.labeled_from)
    if spec.filters.labeled_to:
        labels = labels.filter(created_at__date__lte=spec.filters.labeled_to)
    return labels


def verdicts_at(spec: Spec) -> Verdicts:
    """Decide every pair's label from the labels the spec allows (`annotate.exports.labels`)."""
    priors = None
    if spec.filters.labels == "with_priors":
        kept = PriorLabel.objects.filter(pair__campaign_id=spec.campaign_id, pk__lte=spec.cutoff.prior)
        priors = Votes(kept, rater=None)
    return Verdicts(human=Votes(human_labels(spec)), priors=priors)


def judge(spec: Spec, verdicts: Verdicts, row: dict) -> Verdict | str:
    """Return the pair's verdict when the filters keep it, else the reason it is left out."""
    verdict = verdicts.of(row["pair_id"], row["gold_answer"])
    noise = row.get("noise_score")
    if verdict is None:
        return "unlabeled"
    if verdict.n_labels < spec.filters.min_labels:
        return "below min_labels"
    if verdict.agreement < spec.filters.min_agreement:
        return "below min_agreement"
    if spec.filters.exclude_suspected_noise and noise is not None and noise >= spec.noise_threshold:
        return "suspected noise"
    return verdict


def pair_rows(
    spec: Spec, verdicts: Verdicts, *, skipped: Counter, on_progress: ProgressCallback, spans: bool = False
) -> Iterator[PairRow]:
    """Yield each kept pair in id order; count each left-out pair in `skipped` under its reason.

    With `spans`, each row carries the spans its human labels marked (those the spec allows): a subquery per
    pair, so only the formats that write spans pay for it.
    """
    pairs = _pairs(spec)
    total = max(pairs.count(), 1)
    for seen, row in enumerate(_pair_stream(spec, pairs, spans=spans), start=1):
        if seen % PROGRESS_EVERY == 0:
            on_progress(seen / total)
        verdict = judge(spec, verdicts, row)
        if isinstance(verdict, str):
            skipped[verdict] += 1
            continue
        yield _pair_row(spec, row, verdict)


def annotation_rows(
    spec: Spec, verdicts: Verdicts, *, skipped: Counter, on_progress: ProgressCallback
) -> Iterator[AnnotationRow]:
    """Yield each human label of a kept pair in (pair, id) order; count left-out labels under their reason.

    The pair's columns (item, answers, score) are read and judged once per pair, not once per label: two
    streams in pair order, merged here, so a pair with three labels decodes its item's JSON once.
    """
    labels = human_labels(spec).filter(pair__in=_pairs(spec)).order_by("pair_id", "id")
    columns = [("pair_id", "pair_id"), *ANNOTATION_COLUMNS]
    total = max(labels.count(), 1)
    # The pair is the campaign's already: its labels need no second join to the pairs to say so.
    labeled = Exists(human_labels(spec, Annotation.objects.filter(pair_id=OuterRef("pk"))))
    pairs = _pair_stream(spec, _pairs(spec).filter(labeled))
    pair: tuple[dict, Verdict | str] | None = None
    annotators = _Pseudonyms(spec.campaign_id)
    for seen, label in enumerate(_dicts(labels, columns), start=1):
        if seen % PROGRESS_EVERY == 0:
            on_progress(seen / total)
        while pair is None or pair[0]["pair_id"] != label["pair_id"]:
            row = next(pairs)
            pair = (row, judge(spec, verdicts, row))
        if isinstance(pair[1], str):
            skipped[pair[1]] += 1
            continue
        yield _annotation_row(pair[0], label, pair[1], annotator=annotators(label["annotator_id"]))


class _Pseudonyms:
    """Each annotator's pseudonym in one campaign, hashed once per annotator rather than once per label."""

    def __init__(self, campaign_id: int) -> None:
        self.campaign_id = campaign_id
        self.known: dict[int, str] = {}

    def __call__(self, user_id: int) -> str:
        if user_id not in self.known:
            self.known[user_id] = pseudonym(user_id=user_id, campaign_id=self.campaign_id)
        return self.known[user_id]


def _pair_stream(spec: Spec, pairs: QuerySet[Pair], *, spans: bool = False) -> Iterator[dict]:
    """Stream pairs in id order with their item, answers and (with a model run) the run's scores and weight."""
    columns = list(PAIR_COLUMNS)
    if spans:
        pairs = pairs.annotate(marked_spans=_marked_spans(spec))
        columns.append(("spans", "marked_spans"))
    if spec.run_id is not None:
        scored = Q(scores__run_id=spec.run_id, scores__pk__lte=spec.cutoff.score)
        pairs = pairs.annotate(run_score=FilteredRelation("scores", condition=scored))
        columns += [(name, f"run_score__{name}") for name in (*SCORE_FIELDS, "weight")]
    for row in _dicts(pairs.order_by("id"), columns):
        row["item"], row["answers"] = _item(spec, row), _answers(row)
        yield row


def _marked_spans(spec: Spec) -> Subquery:
    """Return the pair's human labels' span lists (a JSON list of lists, oldest label first), null when none."""
    labels = human_labels(spec, Annotation.objects.filter(pair_id=OuterRef("pk"))).exclude(spans=[])
    lists = labels.order_by().values("pair_id").annotate(lists=JSONBAgg("spans", order_by="id")).values("lists")
    return Subquery(lists, output_field=JSONField())


def _pairs(spec: Spec) -> QuerySet[Pair]:
    """Return the pairs that existed at the cutoff, with gold in, out or alone."""
    pairs = Pair.objects.filter(campaign_id=spec.campaign_id, pk__lte=spec.cutoff.pair)
    if spec.filters.gold == "exclude":
        return pairs.filter(gold_answer="")
    if spec.filters.gold == "only":
        return pairs.exclude(gold_answer="")
    return pairs


def _dicts(queryset: QuerySet, columns: list[tuple[str, str]]) -> Iterator[dict]:
    """Stream the query's rows as dicts keyed by the columns' row keys, JSON columns parsed."""
    keys = [key for key, _ in columns]
    json_keys = [key for key in keys if key in JSON_KEYS]
    for values in query_rows(queryset.values_list(*(path for _, path in columns))):
        row = dict(zip(keys, values, strict=True))
        for key in json_keys:
            if row[key] is not None:
                row[key] = loads(row[key])
        yield row


def _item(spec: Spec, row: dict) -> Item:
    suffix = posixpath.splitext(row["image_file"])[1].lower()
    return Item(
        external_id=row["external_id"],
        prompt=row["prompt"],
        image=f"{IMAGES_DIR}/{row['image_sha256']}{suffix}",
        image_file=row["image_file"],
        facts=row["facts"] or {},
        meta=row["meta"] or {},
        split=split_of(row["image_sha256"], spec.filters.test_share),
    )


def _answers(row: dict) -> tuple[Answer, Answer]:
    return Answer(row["a_id"], row["a_text"], row["a_model"]), Answer(row["b_id"], row["b_text"], row["b_model"])


def _pair_row(spec: Spec, row: dict, verdict: Verdict) -> PairRow:
    """Build the row: margin from the strength, weight = the model's SFC weight (1 without) × source trust."""
    sfc = row.get("weight")
    trust = spec.prior_trust if verdict.source == "prior" else 1.0
    a, b = row["answers"]
    return PairRow(
        pair_id=row["pair_id"],
        item=row["item"],
        a=a,
        b=b,
        verdict=verdict,
        margin=label_margin(verdict.strength, spec.margins),
        weight=round((1.0 if sfc is None else sfc) * trust, 6),
        scores={name: row.get(name) for name in SCORE_FIELDS},
        spans=[span for spans in row.get("spans") or () for span in spans],
    )


def _annotation_row(pair: dict, label: dict, verdict: Verdict, *, annotator: str) -> AnnotationRow:
    a, b = pair["answers"]
    return AnnotationRow(
        pair_id=pair["pair_id"],
        item=pair["item"],
        a=a,
        b=b,
        verdict=verdict,
        gold_answer=pair["gold_answer"],
        more_hallucinated=label["more_hallucinated"],
        strength=label["strength"],
        hallucination_types=label["hallucination_types"],
        spans=label["spans"],
        rationale=label["rationale"],
        annotator=annotator,
        shown_left=label["shown_left"],
        duration_ms=label["duration_ms"],
        created_at=label["created_at"],
    )
