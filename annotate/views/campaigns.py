"""The home page: the user's campaigns, their role in each, and what they can do there."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.http import require_safe

from annotate import access
from annotate.models import Annotation, Campaign, Membership, Pair
from annotate.views.auth import login_required

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


@require_safe
@login_required
def campaign_list(request: HttpRequest) -> TemplateResponse:
    """List the user's campaigns: a Label button for annotators, Import data for leads."""
    return TemplateResponse(request, "campaigns/list.html", {"rows": campaign_rows(request.user)})
