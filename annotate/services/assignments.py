"""Leasing pairs to annotators (DESIGN.md, "The loop", step 1).

Every lease of a pair is made while holding that pair's row lock (`SELECT … FOR UPDATE SKIP LOCKED`),
so concurrent requests never pick the same pair at once. After the lock is taken the pair's load is
counted again in a fresh statement: under READ COMMITTED that statement sees every lease committed by
whoever held the lock before us, which the candidate query's snapshot may not. Gold pairs are for
quality control and have no overlap cap: every annotator may see each of them once.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from annotate import clock
from annotate.exceptions import ConflictError, NotFoundError, PermissionDeniedError
from annotate.models import Assignment, Campaign, Membership, Pair, Side

# How many locked-then-rejected candidates one request tries before it gives up on a pool.
MAX_CANDIDATES = 20
# What is shown with a leased pair, loaded with the lease so callers need no second query.
PAIR_RELATED = ("item__image", "a", "b")
LEASE_RELATED = tuple(f"pair__{name}" for name in PAIR_RELATED)


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    created: bool


def live_lease_filter(now: datetime) -> Q:
    """Assignments that count against a pair's overlap: done ones and leases not yet expired."""
    return Q(status=Assignment.Status.DONE) | Q(status=Assignment.Status.LEASED, expires_at__gt=now)


def assignment_current(*, campaign: Campaign, annotator: AbstractBaseUser) -> Assignment | None:
    """Return the annotator's unexpired, unfinished lease in this campaign, if any (a reload resumes it)."""
    return (
        Assignment.objects.select_related(*LEASE_RELATED)
        .filter(
            pair__campaign=campaign,
            annotator=annotator,
            status=Assignment.Status.LEASED,
            expires_at__gt=clock.now(),
        )
        .order_by("leased_at")
        .first()
    )


def _live_leases(now: datetime) -> Coalesce:
    """Count a pair's unexpired, unfinished leases, as a subquery per candidate row."""
    leases = (
        Assignment.objects.filter(pair=OuterRef("pk"), status=Assignment.Status.LEASED, expires_at__gt=now)
        .order_by()
        .values("pair")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(leases, output_field=IntegerField()), 0)


def _candidates(*, campaign: Campaign, annotator: AbstractBaseUser, gold: bool, now: datetime, exclude: list[int]):
    """Pairs this annotator has not seen, best first; non-gold ones only while their snapshot shows room.

    The room filter keeps annotators from walking, one locked row at a time, past pairs that others'
    live leases already fill; `_has_room` still decides after the lock, on fresh data.
    """
    seen = Assignment.objects.filter(pair=OuterRef("pk"), annotator=annotator)
    qs = Pair.objects.filter(campaign=campaign, status=Pair.Status.OPEN).exclude(Exists(seen))
    if gold:
        qs = qs.exclude(gold_answer="")
    else:
        qs = qs.filter(gold_answer="").alias(load=F("labels_count") + _live_leases(now))
        qs = qs.filter(load__lt=F("needed_labels"))
    if exclude:
        qs = qs.exclude(pk__in=exclude)
    return qs.order_by("-priority", "id")


def _has_room(pair: Pair, now: datetime) -> bool:
    if pair.is_gold:
        return True
    return pair.assignments.filter(live_lease_filter(now)).count() < pair.needed_labels


def _left_side(pair: Pair) -> str:
    """Draw the side shown on the left; a suspected-noise pair alternates, so re-annotators see both orders.

    DT2IT re-annotates suspected noise in both orders, so a label that only position bias produced
    does not survive the check.
    """
    if "suspected_noise" not in pair.surfaced:
        return random.choice(Side.values)
    shown = Counter(pair.assignments.values_list("left", flat=True))
    if shown[Side.A] == shown[Side.B]:
        return random.choice(Side.values)
    return Side.A if shown[Side.A] < shown[Side.B] else Side.B


def _lease_from_pool(*, campaign: Campaign, annotator: AbstractBaseUser, gold: bool, now: datetime):
    rejected: list[int] = []
    for _ in range(MAX_CANDIDATES):
        pair = (
            _candidates(campaign=campaign, annotator=annotator, gold=gold, now=now, exclude=rejected)
            .select_related(*PAIR_RELATED)
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if pair is None:
            return None
        if _has_room(pair, now):
            return Assignment.objects.create(
                pair=pair,
                annotator=annotator,
                left=_left_side(pair),
                leased_at=now,
                expires_at=now + timedelta(seconds=campaign.lease_seconds),
            )
        rejected.append(pair.pk)
    return None


def assignment_next(*, campaign: Campaign, annotator: AbstractBaseUser) -> Lease | None:
    """Lease the next pair to label, or return the open lease; None when nothing is left for this annotator.

    Gold pairs are mixed in at the campaign's `gold_share`; when the drawn pool is empty the other is tried.
    """
    if campaign.status != Campaign.Status.ACTIVE:
        raise ConflictError(f"Campaign {campaign.pk} is {campaign.status}: no new pairs are handed out.")
    paused = Membership.objects.filter(campaign=campaign, user=annotator, paused_at__isnull=False)
    reason = paused.values_list("paused_reason", flat=True).first()
    if reason is not None:
        raise PermissionDeniedError(f"You are paused from this campaign: {reason or 'a lead paused you.'}")
    want_gold = random.random() < campaign.gold_share
    with transaction.atomic():
        # One annotator's requests run one at a time, so a double click never opens two leases.
        get_user_model().objects.select_for_update().filter(pk=annotator.pk).first()
        current = assignment_current(campaign=campaign, annotator=annotator)
        if current is not None:
            return Lease(current, created=False)
        now = clock.now()
        for gold in (want_gold, not want_gold):
            assignment = _lease_from_pool(campaign=campaign, annotator=annotator, gold=gold, now=now)
            if assignment is not None:
                return Lease(assignment, created=True)
    return None


def assignment_skip(*, assignment_id: int, annotator: AbstractBaseUser) -> Assignment:
    """Give a leased pair back to the pool; the annotator will not be shown it again."""
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().filter(pk=assignment_id, annotator=annotator).first()
        if assignment is None:
            raise NotFoundError(f"No assignment {assignment_id}.")
        if assignment.status == Assignment.Status.DONE:
            raise ConflictError(f"Assignment {assignment_id} is already labeled; it cannot be skipped.")
        if assignment.status == Assignment.Status.LEASED:
            assignment.status = Assignment.Status.SKIPPED
            assignment.finished_at = clock.now()
            assignment.save(update_fields=["status", "finished_at"])
    return assignment
