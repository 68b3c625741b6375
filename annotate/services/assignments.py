"""Leasing pairs to annotators (DESIGN.md, "The loop", step 1).

The lease is one call of the PL/pgSQL function `rewardlab_lease` (migration 0011), one round trip on the
labeling hot path. It holds the rules: every lease of a pair is made while holding that pair's row lock
(`SELECT … FOR UPDATE SKIP LOCKED`), so concurrent requests never pick the same pair at once; after the
lock the pair's load is counted again in a fresh statement, which under READ COMMITTED sees every lease
committed by whoever held the lock before; one annotator's requests run one at a time (their user row is
locked), so a double click never opens two leases; gold pairs are for quality control and have no
overlap cap: every annotator may see each of them once. This module draws the gold share and turns the
function's outcomes into errors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.urls import reverse

from annotate import access, clock
from annotate.exceptions import ConflictError, NotFoundError, PermissionDeniedError
from annotate.models import MAX_ROW_ID, Assignment, Campaign

# How many locked-then-rejected candidates one request tries before it gives up on a pool.
MAX_CANDIDATES = 20
# What the labeling page shows with a leased pair, loaded with it.
LEASE_RELATED = ("pair__item__image", "pair__a", "pair__b")


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    created: bool


@dataclass(frozen=True)
class LeaseTaken:
    """A lease as the function made or resumed it; `body` is the API's next-pair JSON, built by PostgreSQL."""

    assignment_id: int
    created: bool
    body: str


@cache
def _image_url_pattern() -> str:
    """The image URL with `{sha256}` where the hash goes, so PostgreSQL can write each pair's URL."""
    placeholder = "0" * 64
    return reverse("image-file", kwargs={"sha256": placeholder}).replace(placeholder, "{sha256}")


def lease_take(*, campaign_id: int, user_id: int, roles: frozenset[str] = access.LABEL) -> LeaseTaken | None:
    """Lease the next pair to label, or resume the open lease; None when nothing is left for this user.

    Gold pairs are mixed in at the campaign's `gold_share` (the draw is made here, the comparison by the
    function); when the drawn pool is empty the other is tried. Refuses a user without one of `roles` here
    as `access.campaign_for` does, a campaign that is not active, and a paused annotator.
    """
    if not 0 < campaign_id <= MAX_ROW_ID:
        raise NotFoundError(f"No campaign {campaign_id}.")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT outcome, detail, assignment_id, body "
            "FROM rewardlab_lease(%s::integer, %s::bigint, %s::text[], %s::float8, %s, %s::text, %s::integer)",
            [user_id, campaign_id, sorted(roles), random.random(), clock.now(), _image_url_pattern(), MAX_CANDIDATES],
        )
        outcome, detail, assignment_id, body = cursor.fetchone()
    if outcome == "refused":
        access.refuse(campaign_id=campaign_id, role=detail, roles=roles)
    if outcome == "inactive":
        raise ConflictError(f"Campaign {campaign_id} is {detail}: no new pairs are handed out.")
    if outcome == "paused":
        raise PermissionDeniedError(f"You are paused from this campaign: {detail or 'a lead paused you.'}")
    if outcome == "none":
        return None
    return LeaseTaken(assignment_id=assignment_id, created=outcome == "leased", body=body)


def assignment_next(*, campaign: Campaign, annotator: AbstractBaseUser) -> Lease | None:
    """Lease the next pair for the labeling page: the lease with its pair, item, image and answers loaded."""
    taken = lease_take(campaign_id=campaign.pk, user_id=annotator.pk)
    if taken is None:
        return None
    assignment = Assignment.objects.select_related(*LEASE_RELATED).get(pk=taken.assignment_id)
    return Lease(assignment, created=taken.created)


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
