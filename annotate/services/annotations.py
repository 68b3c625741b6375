"""Saving human labels (API.md, "Labels"): idempotent per assignment, validated against the campaign.

The save is one call of the PL/pgSQL function `rewardlab_submit` (migration 0011), one round trip on the
labeling hot path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from annotate import clock
from annotate.exceptions import ApplicationError, ConflictError, NotFoundError
from annotate.models import HALLUCINATION_TYPES, MAX_ROW_ID, Campaign, Choice
from annotate.selectors import pseudonym
from annotate.services.jobs import resend_before
from annotate.services.model_runs import retrain_if_due
from annotate.services.quality import consensus_intervals, consensus_send_claimed, gold_check

logger = logging.getLogger(__name__)

PREFERENCE_CHOICES = {Choice.A, Choice.B}
# What the columns hold (smallint, integer); the campaign's own scale is checked by `rewardlab_submit`.
MAX_STRENGTH = 32767
MAX_DURATION_MS = 2**31 - 1


@dataclass(frozen=True)
class LabelInput:
    """A label as the annotator gave it, in canonical a/b terms."""

    more_hallucinated: str
    strength: int | None = None
    hallucination_types: tuple[str, ...] = ()
    spans: tuple[dict, ...] = ()
    rationale: str = ""
    duration_ms: int | None = None


@dataclass(frozen=True)
class Submitted:
    """A saved label as `rewardlab_submit` returned it; `body` is the API's annotation JSON, built by PostgreSQL."""

    annotation_id: int
    created: bool
    body: dict


def label_shape_errors(label: LabelInput) -> dict[str, str]:
    """Return what is wrong with a label on its own, per field; the campaign and the pair are checked in SQL.

    `rewardlab_submit` (migration 0011) checks the strength against the campaign's scale and the rationale
    the campaign may require, and `rewardlab_spans_errors` (0014) the spans against the answers' lengths and
    the campaign's spans setting; they name the field the same way.
    """
    errors: dict[str, str] = {}
    if label.more_hallucinated not in Choice.values:
        errors["more_hallucinated"] = f"Expected one of {', '.join(Choice.values)}, got {label.more_hallucinated!r}."
    elif label.more_hallucinated not in PREFERENCE_CHOICES and label.strength is not None:
        errors["strength"] = f"'{label.more_hallucinated}' takes no strength, got {label.strength!r}."
    elif label.strength is not None and not 1 <= label.strength <= MAX_STRENGTH:
        errors["strength"] = f"Expected a strength from 1 to the campaign's scale, got {label.strength!r}."
    unknown = sorted(set(label.hallucination_types) - set(HALLUCINATION_TYPES))
    if unknown:
        errors["hallucination_types"] = f"Unknown types {unknown}; expected some of {', '.join(HALLUCINATION_TYPES)}."
    span_error = _span_shape_error(label.spans)
    if span_error:
        errors["spans"] = span_error
    if label.duration_ms is not None and not 0 <= label.duration_ms <= MAX_DURATION_MS:
        errors["duration_ms"] = f"Expected a duration from 0 to {MAX_DURATION_MS} ms, got {label.duration_ms}."
    return errors


def _span_shape_error(spans: tuple[dict, ...]) -> str | None:
    for index, span in enumerate(spans):
        if span.get("response") not in ("a", "b"):
            return f"Span {index}: response must be 'a' or 'b', got {span.get('response')!r}."
        start, end = span.get("start"), span.get("end")
        if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
            return f"Span {index}: start and end must be integers, got start={start!r}, end={end!r}."
        if span.get("type") not in (None, *HALLUCINATION_TYPES):
            return f"Span {index}: type must be one of {', '.join(HALLUCINATION_TYPES)}, got {span.get('type')!r}."
    return None


def annotation_save(*, assignment_id: int, user_id: int, label: LabelInput) -> Submitted:
    """Save the label for an assignment in one call of `rewardlab_submit`; a resubmission creates nothing.

    The function locks the assignment, checks the label against the campaign and the pair, keeps a label
    on an expired lease only while the pair has room, counts it on the pair (closing a full one) and on the
    campaign, and claims the consensus refresh. What needs a worker is asked for after the commit, so a
    failure there never loses the saved label.
    """
    if not 0 < assignment_id <= MAX_ROW_ID:
        raise NotFoundError(f"No assignment {assignment_id}.")
    errors = label_shape_errors(label)
    if errors:
        raise ApplicationError("The label is not valid.", extra={"fields": errors})
    now = clock.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT outcome, detail, body, campaign_id, is_gold, retrain_due, consensus_claimed "
            "FROM rewardlab_submit(%s::integer, %s::bigint, %s::text, %s::integer, %s, %s, %s::text, %s::integer, "
            "%s, %s, %s, %s)",
            [
                user_id, assignment_id, label.more_hallucinated, label.strength,
                Jsonb(list(label.hallucination_types)), Jsonb(list(label.spans)), label.rationale, label.duration_ms,
                now, *consensus_intervals(), resend_before(),
            ],
        )  # fmt: skip
        outcome, detail, body, campaign_id, is_gold, retrain_due, consensus_claimed = cursor.fetchone()
    _raise_refusal(outcome, detail, assignment_id)
    if consensus_claimed:
        transaction.on_commit(lambda: _consensus_send(campaign_id, now))
    if retrain_due:
        transaction.on_commit(lambda: _retrain_if_due(campaign_id))
    if is_gold and outcome == "created":
        transaction.on_commit(lambda: _gold_check(campaign_id, user_id))
    submitted = json.loads(body)
    submitted["annotator"] = pseudonym(user_id=user_id, campaign_id=campaign_id)
    return Submitted(annotation_id=submitted["id"], created=outcome == "created", body=submitted)


def _raise_refusal(outcome: str, detail: str | None, assignment_id: int) -> None:
    if outcome == "not_found":
        raise NotFoundError(f"No assignment {assignment_id}.")
    if outcome == "skipped":
        raise ConflictError(f"Assignment {assignment_id} was skipped; it cannot be labeled any more.")
    if outcome == "invalid":
        raise ApplicationError("The label is not valid.", extra={"fields": json.loads(detail)})
    if outcome == "expired":
        raise ConflictError(
            f"Assignment {assignment_id} expired at {detail} UTC and its pair "
            "has since been given to other annotators; this label was not saved."
        )


def _retrain_if_due(campaign_id: int) -> None:
    """Ask for the retrain after the label is committed; a failure here never loses the saved label."""
    try:
        retrain_if_due(campaign_id=campaign_id)
    except Exception:
        logger.exception("Campaign %s: the retrain could not be asked for; the next label asks again.", campaign_id)


def _consensus_send(campaign_id: int, claimed_at: datetime) -> None:
    """Send the consensus refresh this label claimed; a failure here never loses the saved label."""
    try:
        consensus_send_claimed(campaign_id=campaign_id, claimed_at=claimed_at)
    except Exception:
        logger.exception("Campaign %s: the consensus refresh could not be asked for; the next label asks.", campaign_id)


def _gold_check(campaign_id: int, user_id: int) -> None:
    """Judge gold accuracy after the label is committed; a failure here never loses the saved label."""
    try:
        campaign = Campaign.objects.get(pk=campaign_id)
        gold_check(campaign=campaign, annotator=get_user_model().objects.get(pk=user_id))
    except Exception:
        logger.exception(
            "Campaign %s: gold accuracy of user %s was not checked; the next gold label checks again.",
            campaign_id,
            user_id,
        )
