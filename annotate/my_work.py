"""Reads for the annotator's "My work" page: their own labels in one campaign, as they gave them (issue 18, item 3).

An annotator thinks in the sides they saw, so rows and filters speak in left/right: a label stored as `b`
given with `b` on the left is "left". Only the annotator's own labels are ever read here. Gold pairs are
told apart only where the campaign gives gold feedback, since otherwise an annotator never learns which
pairs are gold (API.md); and feedback is only on labels, so on gold pairs already answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Sum

from annotate.models import Annotation, Campaign, Choice, Pair

# The side the annotator picked as more hallucinated, in screen terms (as the labeling page's choices).
LEFT = "left"
RIGHT = "right"
ANSWERS = {
    LEFT: "Left more hallucinated",
    RIGHT: "Right more hallucinated",
    Choice.BOTH.value: "Both equally",
    Choice.NEITHER.value: "Neither",
}
# The gold filter: gold pairs only, or the gold pairs answered wrong.
GOLD_ONLY = "only"
GOLD_MISSED = "missed"


class Median(Aggregate):
    """PostgreSQL's exact median of a column (NULLs skipped): `percentile_cont(0.5) WITHIN GROUP (ORDER BY x)`."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass(frozen=True)
class WorkFilters:
    """What the annotator narrowed the list to; the defaults show every label."""

    answer: str = ""  # a key of ANSWERS
    labeled_from: date | None = None  # labels given on or after this day (UTC)
    labeled_to: date | None = None  # labels given on or before this day (UTC)
    gold: str = ""  # GOLD_ONLY or GOLD_MISSED; only where the campaign gives gold feedback


@dataclass(frozen=True)
class GoldFeedback:
    """How one answered gold pair went: right or not, and the known answer in the sides the annotator saw."""

    right: bool
    answer: str  # a key of ANSWERS

    @property
    def answer_words(self) -> str:
        return ANSWERS[self.answer]


@dataclass(frozen=True)
class WorkRow:
    """One label as the annotator gave it: the answers in the order shown, their pick in screen terms."""

    annotation: Annotation
    left_text: str
    right_text: str
    left_spans: list[dict]  # the annotator's own spans in each answer, offsets in that answer's text
    right_spans: list[dict]
    answer: str  # a key of ANSWERS
    strength_word: str  # the campaign's word for the strength, "" when none or no strength
    gold: GoldFeedback | None  # None unless the pair is gold and the campaign gives feedback

    @property
    def answer_words(self) -> str:
        return ANSWERS[self.answer]


@dataclass(frozen=True)
class WorkSummary:
    """The annotator's labels under the filters: how many, the time they took, and gold results when shown."""

    labels: int
    timed: int  # labels with a recorded duration; the times below are over these
    total_ms: int | None
    median_ms: float | None
    gold_answered: int
    gold_right: int


def screen_side(choice: str, *, shown_left: str) -> str:
    """Translate a canonical choice into the sides of a screen that showed `shown_left` on the left.

    >>> [screen_side(choice, shown_left="b") for choice in ("a", "b", "both")]
    ['right', 'left', 'both']
    """
    if choice in (Choice.A, Choice.B):
        return LEFT if choice == shown_left else RIGHT
    return choice


def _answer_filter(answer: str) -> Q:
    picked_side = Q(more_hallucinated__in=(Choice.A, Choice.B))
    if answer == LEFT:
        return picked_side & Q(more_hallucinated=F("shown_left"))
    if answer == RIGHT:
        return picked_side & ~Q(more_hallucinated=F("shown_left"))
    return Q(more_hallucinated=answer)


def my_labels(*, campaign: Campaign, annotator: AbstractBaseUser, filters: WorkFilters) -> QuerySet[Annotation]:
    """Return the annotator's own labels in the campaign under `filters`, newest first, with what a row shows."""
    labels = Annotation.objects.filter(pair__campaign=campaign, annotator=annotator)
    if filters.answer:
        labels = labels.filter(_answer_filter(filters.answer))
    if filters.labeled_from:
        labels = labels.filter(created_at__date__gte=filters.labeled_from)
    if filters.labeled_to:
        labels = labels.filter(created_at__date__lte=filters.labeled_to)
    if filters.gold and campaign.gold_feedback:
        labels = labels.exclude(pair__gold_answer="")
        if filters.gold == GOLD_MISSED:
            labels = labels.exclude(more_hallucinated=F("pair__gold_answer"))
    return labels.select_related("pair__item", "pair__a", "pair__b").order_by("-created_at", "-id")


def my_work_summary(labels: QuerySet[Annotation], *, campaign: Campaign) -> WorkSummary:
    """Summarise `my_labels` in one query; gold counts stay 0 where the campaign gives no gold feedback."""
    aggregates = {
        "labels": Count("pk"),
        "timed": Count("duration_ms"),
        "total_ms": Sum("duration_ms"),
        "median_ms": Median("duration_ms"),
    }
    if campaign.gold_feedback:
        gold = ~Q(pair__gold_answer="")
        aggregates["gold_answered"] = Count("pk", filter=gold)
        aggregates["gold_right"] = Count("pk", filter=gold & Q(more_hallucinated=F("pair__gold_answer")))
    totals = {"gold_answered": 0, "gold_right": 0} | labels.order_by().aggregate(**aggregates)
    return WorkSummary(**totals)


def _gold_feedback(pair: Pair, *, shown_left: str, given: str) -> GoldFeedback:
    return GoldFeedback(right=given == pair.gold_answer, answer=screen_side(pair.gold_answer, shown_left=shown_left))


def my_work_rows(labels: list[Annotation], *, campaign: Campaign) -> list[WorkRow]:
    """Return a row per label of a page of `my_labels`, reading only what it selected."""
    words = list(campaign.strength_labels)
    rows = []
    for label in labels:
        pair = label.pair
        left, right = (pair.a, pair.b) if label.shown_left == Choice.A else (pair.b, pair.a)
        right_side = Choice.B if label.shown_left == Choice.A else Choice.A
        feedback = campaign.gold_feedback and pair.is_gold
        rows.append(
            WorkRow(
                annotation=label,
                left_text=left.text,
                right_text=right.text,
                left_spans=[span for span in label.spans if span.get("response") == label.shown_left],
                right_spans=[span for span in label.spans if span.get("response") == right_side],
                answer=screen_side(label.more_hallucinated, shown_left=label.shown_left),
                strength_word=words[label.strength - 1] if label.strength and label.strength <= len(words) else "",
                gold=_gold_feedback(pair, shown_left=label.shown_left, given=label.more_hallucinated)
                if feedback
                else None,
            )
        )
    return rows
