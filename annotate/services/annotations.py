"""Saving human labels (API.md, "Labels"): idempotent per assignment, validated against the campaign."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When

from annotate import clock
from annotate.exceptions import ApplicationError, ConflictError, NotFoundError
from annotate.models import HALLUCINATION_TYPES, Annotation, Assignment, Campaign, Choice, Pair
from annotate.services.assignments import live_lease_filter
from annotate.services.model_runs import retrain_if_due
from annotate.services.quality import consensus_request, gold_check

logger = logging.getLogger(__name__)

PREFERENCE_CHOICES = {Choice.A, Choice.B}


@dataclass(frozen=True)
class LabelInput:
    """A label as the annotator gave it, in canonical a/b terms."""

    more_hallucinated: str
    strength: int | None = None
    hallucination_types: tuple[str, ...] = ()
    spans: tuple[dict, ...] = ()
    rationale: str = ""
    duration_ms: int | None = None


def label_errors(label: LabelInput, *, campaign: Campaign, pair: Pair) -> dict[str, str]:
    """Return what is wrong with a label, per field; empty when it is valid for this campaign and pair."""
    errors: dict[str, str] = {}
    if label.more_hallucinated not in Choice.values:
        errors["more_hallucinated"] = f"Expected one of {', '.join(Choice.values)}, got {label.more_hallucinated!r}."
    elif label.more_hallucinated in PREFERENCE_CHOICES:
        if label.strength is None or not 1 <= label.strength <= campaign.strength_scale:
            errors["strength"] = (
                f"A choice of {label.more_hallucinated!r} needs a strength from 1 to {campaign.strength_scale}, "
                f"got {label.strength!r}."
            )
    elif label.strength is not None:
        errors["strength"] = f"'{label.more_hallucinated}' takes no strength, got {label.strength!r}."
    unknown = sorted(set(label.hallucination_types) - set(HALLUCINATION_TYPES))
    if unknown:
        errors["hallucination_types"] = f"Unknown types {unknown}; expected some of {', '.join(HALLUCINATION_TYPES)}."
    span_error = _span_error(label.spans, pair)
    if span_error:
        errors["spans"] = span_error
    if campaign.rationale_required and not label.rationale.strip():
        errors["rationale"] = "This campaign asks for a rationale with every label."
    if label.duration_ms is not None and label.duration_ms < 0:
        errors["duration_ms"] = f"Expected a non-negative duration, got {label.duration_ms}."
    return errors


def _span_error(spans: tuple[dict, ...], pair: Pair) -> str | None:
    texts = {"a": pair.a.text, "b": pair.b.text}
    for index, span in enumerate(spans):
        text = texts.get(span.get("response"))
        start, end = span.get("start"), span.get("end")
        if text is None:
            return f"Span {index}: response must be 'a' or 'b', got {span.get('response')!r}."
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            return f"Span {index}: expected 0 <= start < end <= {len(text)}, got start={start!r}, end={end!r}."
    return None


def _ensure_slot(assignment: Assignment) -> None:
    """Accept a label on an expired lease only while the pair still has room for it."""
    now = clock.now()
    if assignment.expires_at > now:
        return
    pair = Pair.objects.select_for_update().get(pk=assignment.pair_id)
    others = pair.assignments.filter(live_lease_filter(now)).exclude(pk=assignment.pk).count()
    if not pair.is_gold and others >= pair.needed_labels:
        raise ConflictError(
            f"Assignment {assignment.pk} expired at {assignment.expires_at:%Y-%m-%d %H:%M:%S} UTC and its pair "
            "has since been given to other annotators; this label was not saved."
        )


def annotation_submit(*, assignment_id: int, annotator: AbstractBaseUser, label: LabelInput) -> tuple[Annotation, bool]:
    """Save the label for an assignment; a resubmission returns the first annotation and creates nothing.

    Returns the annotation and whether it was created now.
    """
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("pair__campaign", "pair__item", "pair__a", "pair__b")
            .filter(pk=assignment_id, annotator=annotator)
            .first()
        )
        if assignment is None:
            raise NotFoundError(f"No assignment {assignment_id}.")
        if assignment.status == Assignment.Status.DONE:
            return Annotation.objects.get(assignment=assignment), False
        if assignment.status == Assignment.Status.SKIPPED:
            raise ConflictError(f"Assignment {assignment_id} was skipped; it cannot be labeled any more.")
        pair = assignment.pair
        errors = label_errors(label, campaign=pair.campaign, pair=pair)
        if errors:
            raise ApplicationError("The label is not valid.", extra={"fields": errors})
        _ensure_slot(assignment)
        annotation = Annotation.objects.create(
            assignment=assignment,
            pair=pair,
            annotator=annotator,
            more_hallucinated=label.more_hallucinated,
            strength=label.strength,
            hallucination_types=list(label.hallucination_types),
            spans=list(label.spans),
            rationale=label.rationale,
            shown_left=assignment.left,
            duration_ms=label.duration_ms,
        )
        assignment.status = Assignment.Status.DONE
        assignment.finished_at = clock.now()
        assignment.save(update_fields=["status", "finished_at"])
        _count_label(pair)
        transaction.on_commit(lambda: _consensus_request(pair.campaign_id))
        if _count_campaign_label(pair.campaign_id):
            transaction.on_commit(lambda: _retrain_if_due(pair.campaign_id))
        if pair.is_gold:
            transaction.on_commit(lambda: _gold_check(pair.campaign, annotator))
    return annotation, True


def _count_campaign_label(campaign_id: int) -> bool:
    """Count the label on the campaign, last in the transaction; tell whether a retrain is due.

    One UPDATE … RETURNING, so concurrent submits each see their own count and none is lost; the row
    lock it takes lasts only until the commit right after.
    """
    table = Campaign._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET human_labels = human_labels + 1 WHERE id = %s "
            "RETURNING human_labels - labels_at_last_request >= retrain_every",
            [campaign_id],
        )
        return bool(cursor.fetchone()[0])


def _retrain_if_due(campaign_id: int) -> None:
    """Ask for the retrain after the label is committed; a failure here never loses the saved label."""
    try:
        retrain_if_due(campaign_id=campaign_id)
    except Exception:
        logger.exception("Campaign %s: the retrain could not be asked for; the next label asks again.", campaign_id)


def _consensus_request(campaign_id: int) -> None:
    """Ask for the consensus refresh after the label is committed; a failure here never loses the saved label."""
    try:
        consensus_request(campaign_id=campaign_id)
    except Exception:
        logger.exception("Campaign %s: the consensus refresh could not be asked for; the next label asks.", campaign_id)


def _gold_check(campaign: Campaign, annotator: AbstractBaseUser) -> None:
    """Judge gold accuracy after the label is committed; a failure here never loses the saved label."""
    try:
        gold_check(campaign=campaign, annotator=annotator)
    except Exception:
        logger.exception(
            "Campaign %s: gold accuracy of user %s was not checked; the next gold label checks again.",
            campaign.pk,
            annotator.pk,
        )


def _count_label(pair: Pair) -> None:
    """Count the label, and close a non-gold pair that now has all it needs, in one statement."""
    now_complete = Q(gold_answer="") & Q(labels_count__gte=F("needed_labels") - 1)
    Pair.objects.filter(pk=pair.pk).update(
        labels_count=F("labels_count") + 1,
        status=Case(When(now_complete, then=Value(Pair.Status.COMPLETE)), default=F("status")),
    )
