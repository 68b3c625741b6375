"""Taking a label back: its annotator changes it within the campaign's edit window (issue 18).

One label per annotator and pair, always: an edit rewrites the annotation row in place, so every count,
list, consensus, gold score and export reads the latest version with no extra join, and the version it
replaces is kept in `AnnotationVersion` with the time it was given. The row lock (SELECT … FOR UPDATE)
serializes concurrent edits of one label: each reads the version the previous one wrote, so none is lost.

An edit is no new label. `Campaign.human_labels` and the pair's `labels_count` stay as they are, and so
does the retrain counter: `retrain_every` counts labels the model has not seen, and an edit does not
bring a new one; the next retrain, whenever it comes, reads the latest version. What an edit changes now
is the consensus (a refresh is claimed as a submit claims one, and `label_edits` marks the stored one
stale for the worker's beat) and, on a gold pair, the annotator's gold accuracy (judged again).

The window runs from when the label was first given, not from its last edit, so edits cannot keep a
label open for ever.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F
from psycopg.types.json import Jsonb

from annotate import clock
from annotate.exceptions import ApplicationError, ConflictError, NotFoundError
from annotate.models import MAX_ROW_ID, Annotation, Campaign, Membership
from annotate.services.annotations import (
    PREFERENCE_CHOICES,
    LabelInput,
    _consensus_send,
    _gold_check,
    label_shape_errors,
)
from annotate.services.quality import consensus_claim

# What an edit may change; the side shown, the duration and the pair are the first label's for good.
EDITABLE_FIELDS = ("more_hallucinated", "strength", "hallucination_types", "spans", "rationale")


def edit_deadline(annotation: Annotation, campaign: Campaign) -> datetime:
    """Return when the label stops being editable: the campaign's window after it was first given."""
    return annotation.created_at + timedelta(minutes=campaign.edit_window_minutes)


def edit_refusal(annotation: Annotation, campaign: Campaign, *, now: datetime) -> ConflictError | None:
    """Say why the annotator may not change this label now, or None when they may.

    The label page asks before it shows the label again, the edit itself asks under the row lock.
    """
    if campaign.status != Campaign.Status.ACTIVE:
        return ConflictError(f"Campaign {campaign.pk} is {campaign.status}; its labels cannot be changed.")
    if campaign.edit_window_minutes == 0:
        return ConflictError(f"Campaign {campaign.pk} does not let labels be changed (its edit window is 0 minutes).")
    if campaign.gold_feedback and annotation.pair.is_gold:
        # My work shows a gold pair's answer once it is answered: a label changed after that would be copied.
        return ConflictError(
            f"Annotation {annotation.pk} is on a gold pair whose answer this campaign shows you, so it is final."
        )
    deadline = edit_deadline(annotation, campaign)
    if now >= deadline:
        return ConflictError(
            f"Annotation {annotation.pk} was given at {annotation.created_at:%Y-%m-%d %H:%M:%S} UTC; this campaign "
            f"lets a label be changed for {campaign.edit_window_minutes} minutes, so it could be changed until "
            f"{deadline:%H:%M:%S} UTC."
        )
    paused = Membership.objects.filter(campaign=campaign, user_id=annotation.annotator_id, paused_at__isnull=False)
    if paused.exists():
        return ConflictError(f"You are paused in campaign {campaign.pk}; your labels cannot be changed now.")
    return None


def annotation_edit(*, annotation_id: int, user_id: int, changes: dict) -> Annotation:
    """Change the user's own label with `changes` (some of EDITABLE_FIELDS); return the annotation, now latest.

    The row is locked first, so two edits at once run one after the other and each stores the version it
    replaced. Someone else's label answers like a missing one (the caller checked the user's role).
    """
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown or not changes:
        raise ApplicationError(
            f"Expected some of {', '.join(EDITABLE_FIELDS)} to change, got {', '.join(sorted(changes)) or 'none'}."
        )
    now = clock.now()
    with transaction.atomic():
        annotation = _locked_own(annotation_id, user_id)
        campaign = annotation.pair.campaign
        refusal = edit_refusal(annotation, campaign, now=now)
        if refusal is not None:
            raise refusal
        label = _edited_label(annotation, changes)
        errors = label_shape_errors(label) | label_fit_errors(label, annotation)
        if errors:
            raise ApplicationError("The label is not valid.", extra={"fields": errors})
        annotation.as_version(replaced_at=now).save()
        _apply(annotation, label, now=now)
        Campaign.objects.filter(pk=campaign.pk).update(label_edits=F("label_edits") + 1)
        if consensus_claim(campaign_id=campaign.pk, now=now):
            transaction.on_commit(lambda: _consensus_send(campaign.pk, now))
        if annotation.pair.is_gold:
            transaction.on_commit(lambda: _gold_check(campaign.pk, user_id))
    return annotation


def _locked_own(annotation_id: int, user_id: int) -> Annotation:
    """Lock and return the user's annotation (only its row: the pair and campaign stay free for others)."""
    if not 0 < annotation_id <= MAX_ROW_ID:
        raise NotFoundError(f"No annotation {annotation_id}.")
    annotation = (
        Annotation.objects.select_related("pair__campaign", "pair__a", "pair__b")
        .select_for_update(of=("self",))
        .filter(pk=annotation_id, annotator_id=user_id)
        .first()
    )
    if annotation is None:
        raise NotFoundError(f"No annotation {annotation_id} of yours.")
    return annotation


def _edited_label(annotation: Annotation, changes: dict) -> LabelInput:
    """Return the label with `changes` applied; a tie drops a strength the edit did not give."""
    current = LabelInput(
        more_hallucinated=annotation.more_hallucinated,
        strength=annotation.strength,
        hallucination_types=tuple(annotation.hallucination_types),
        spans=tuple(annotation.spans),
        rationale=annotation.rationale,
    )
    edited = replace(current, **{key: tuple(v) if isinstance(v, list) else v for key, v in changes.items()})
    if edited.more_hallucinated not in PREFERENCE_CHOICES and "strength" not in changes:
        edited = replace(edited, strength=None)
    return edited


def label_fit_errors(label: LabelInput, annotation: Annotation) -> dict[str, str]:
    """Return what the campaign and the pair refuse in the label, per field, worded as `rewardlab_submit` words it.

    The submit checks the same in SQL (migration 0011), on its hot path; an edit is rare and checks strength and
    rationale here, and spans with the submit's own SQL function.
    """
    campaign, pair = annotation.pair.campaign, annotation.pair
    errors: dict[str, str] = {}
    if label.more_hallucinated in PREFERENCE_CHOICES and not (
        label.strength is not None and 1 <= label.strength <= campaign.strength_scale
    ):
        errors["strength"] = (
            f"A choice of '{label.more_hallucinated}' needs a strength from 1 to {campaign.strength_scale}, "
            f"got {label.strength}."
        )
    spans_error = _spans_error(campaign, label, lengths=(len(pair.a.text), len(pair.b.text)))
    if spans_error:
        errors["spans"] = spans_error
    if campaign.rationale_required and not label.rationale.strip():
        errors["rationale"] = "This campaign asks for a rationale with every label."
    return errors


def _spans_error(campaign: Campaign, label: LabelInput, *, lengths: tuple[int, int]) -> str | None:
    """Check the spans with the submit's own rule (`rewardlab_spans_errors`, migration 0014): offsets and setting."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rewardlab_spans_errors(%s, %s, %s, %s, %s)",
            [campaign.spans, label.more_hallucinated, Jsonb(list(label.spans)), *lengths],
        )
        return cursor.fetchone()[0]


def _apply(annotation: Annotation, label: LabelInput, *, now: datetime) -> None:
    annotation.more_hallucinated = label.more_hallucinated
    annotation.strength = label.strength
    annotation.hallucination_types = list(label.hallucination_types)
    annotation.spans = list(label.spans)
    annotation.rationale = label.rationale
    annotation.version += 1
    annotation.edited_at = now
    annotation.full_clean(exclude=["assignment", "pair", "annotator"])
    annotation.save(update_fields=[*EDITABLE_FIELDS, "version", "edited_at"])
