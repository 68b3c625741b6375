"""Reads: the querysets and summaries that pages and endpoints show (STYLE.md, habit 1)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from annotate import access
from annotate.exceptions import NotFoundError
from annotate.models import Annotation, Assignment, Campaign, Choice, Membership, Pair

PREFERENCE = {Choice.A, Choice.B}


def pseudonym(*, user_id: int, campaign_id: int) -> str:
    """Return a stable id for an annotator within one campaign that cannot be linked across campaigns."""
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, f"{campaign_id}:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"ann-{digest[:10]}"


def pair_list(*, campaign: Campaign, status: str = "", surfaced: str = "", gold: bool | None = None) -> QuerySet[Pair]:
    """Return the campaign's pairs with what the pair representation needs, labels prefetched."""
    qs = (
        Pair.objects.filter(campaign=campaign)
        .select_related("item__image", "a", "b")
        .prefetch_related(
            Prefetch("annotations", queryset=Annotation.objects.only("pair_id", "more_hallucinated", "strength"))
        )
    )
    if status:
        qs = qs.filter(status=status)
    if surfaced:
        qs = qs.filter(surfaced__contains=[surfaced])
    if gold is not None:
        qs = qs.exclude(gold_answer="") if gold else qs.filter(gold_answer="")
    return qs


def majority_consensus(labels: Iterable[Annotation]) -> dict | None:
    """Return the majority choice, the median strength of those who chose it and the share who agree.

    This is the plain-majority consensus used while labels are few; ties give no consensus.
    """
    labels = list(labels)
    if not labels:
        return None
    counts = Counter(label.more_hallucinated for label in labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return {"more_hallucinated": None, "strength": None, "agreement": counts[0][1] / len(labels)}
    choice, votes = counts[0]
    strengths = [label.strength for label in labels if label.more_hallucinated == choice and label.strength]
    return {
        "more_hallucinated": choice,
        "strength": int(median(strengths)) if choice in PREFERENCE and strengths else None,
        "agreement": votes / len(labels),
    }


def annotation_list(*, campaign: Campaign) -> QuerySet[Annotation]:
    return (
        Annotation.objects.filter(pair__campaign=campaign)
        .select_related("pair__item", "pair__a", "pair__b")
        .order_by("id")
    )


def annotator_done_count(*, campaign: Campaign, user_id: int) -> int:
    return Annotation.objects.filter(pair__campaign=campaign, annotator_id=user_id).count()


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    """Return the live counts shown with a campaign."""
    pairs = Pair.objects.filter(campaign=campaign).aggregate(
        pairs=Count("id"),
        complete=Count("id", filter=Q(status=Pair.Status.COMPLETE)),
        gold=Count("id", filter=~Q(gold_answer="")),
    )
    return {
        "items": campaign.items.count(),
        **pairs,
        "annotations": Annotation.objects.filter(pair__campaign=campaign).count(),
        "open_leases": Assignment.objects.filter(pair__campaign=campaign, status=Assignment.Status.LEASED).count(),
        "members": Membership.objects.filter(campaign=campaign).count(),
    }


STAFF_ROLE_LABEL = "Staff"


@dataclass(frozen=True)
class CampaignRow:
    campaign: Campaign
    role_label: str
    can_label: bool
    can_manage: bool
    can_read_data: bool


def _count_per_campaign(queryset, field: str, aggregate) -> Subquery:
    """A correlated subquery of one aggregate over `queryset`, grouped by its `field` campaign."""
    grouped = queryset.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=aggregate)
    return Coalesce(Subquery(grouped.values("n"), output_field=IntegerField()), 0)


def campaign_rows(user: AbstractBaseUser) -> list[CampaignRow]:
    """Return the campaigns the user sees, newest first, with their role, own label count and totals."""
    my_role = Membership.objects.filter(campaign=OuterRef("pk"), user=user).values("role")[:1]
    campaigns = access.campaigns_visible_to(user).annotate(
        my_role=Subquery(my_role),
        my_done=_count_per_campaign(Annotation.objects.filter(annotator=user), "pair__campaign", Count("pk")),
        pairs_total=_count_per_campaign(Pair.objects.all(), "campaign", Count("pk")),
        labels_total=_count_per_campaign(Pair.objects.all(), "campaign", Sum("labels_count")),
    )
    return [
        CampaignRow(
            campaign=campaign,
            role_label=Membership.Role(campaign.my_role).label if campaign.my_role else STAFF_ROLE_LABEL,
            can_label=access.user_can(user, campaign, access.LABEL),
            can_manage=access.user_can(user, campaign, access.MANAGE),
            can_read_data=access.user_can(user, campaign, access.READ_DATA),
        )
        for campaign in campaigns
    ]


def assignment_of_annotator(*, assignment_id: int, campaign: Campaign, annotator: AbstractBaseUser) -> Assignment:
    """Return the annotator's own assignment in this campaign, with what the label panel shows."""
    assignment = (
        Assignment.objects.select_related("pair__item__image", "pair__a", "pair__b")
        .filter(pk=assignment_id, annotator=annotator, pair__campaign=campaign)
        .first()
    )
    if assignment is None:
        raise NotFoundError(f"No assignment {assignment_id} of yours in campaign {campaign.pk}.")
    return assignment
