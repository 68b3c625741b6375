"""The one place that decides who may see or do what in a campaign.

Every page, endpoint and export asks here. Someone with no membership in a campaign gets
`NotFoundError`, never a 403, so another campaign's ids reveal nothing; a member whose role does not
allow the action gets `PermissionDeniedError`. Staff act as every role in every campaign.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Model, OuterRef, QuerySet, Subquery

from annotate.exceptions import NotFoundError, PermissionDeniedError
from annotate.models import Annotation, Campaign, ImportJob, Membership

Role = Membership.Role
T = TypeVar("T", bound=Model)

# What each action asks of the user's role in the campaign.
ANY_MEMBER: frozenset[str] = frozenset(Role.values)
LABEL: frozenset[str] = frozenset({Role.ANNOTATOR})
MANAGE: frozenset[str] = frozenset({Role.LEAD})
READ_DATA: frozenset[str] = frozenset({Role.LEAD, Role.RESEARCHER})


def campaigns_visible_to(user: AbstractBaseUser) -> QuerySet[Campaign]:
    """Return the campaigns the user belongs to (all of them for staff)."""
    if user.is_staff:
        return Campaign.objects.all()
    return Campaign.objects.filter(memberships__user=user)


def role_of(user: AbstractBaseUser, campaign: Campaign) -> str | None:
    """Return the user's role in the campaign, or None for a stranger."""
    return Membership.objects.filter(campaign=campaign, user=user).values_list("role", flat=True).first()


def campaign_for(user: AbstractBaseUser, campaign_id: int, roles: Iterable[str] = ANY_MEMBER) -> Campaign:
    """Return the campaign if the user holds one of `roles` in it; raise otherwise.

    One query: it guards nearly every page and endpoint (the labeling calls ask `rewardlab_lease` instead).
    """
    if not user.is_authenticated:
        raise NotFoundError(f"No campaign {campaign_id}.")
    my_role = Membership.objects.filter(campaign=OuterRef("pk"), user=user).values("role")[:1]
    campaign = Campaign.objects.filter(pk=campaign_id).annotate(my_role=Subquery(my_role)).first()
    if campaign is None or (not user.is_staff and campaign.my_role not in roles):
        refuse(campaign_id=campaign_id, role=campaign and campaign.my_role, roles=roles)
    return campaign


def refuse(*, campaign_id: int, role: str | None, roles: Iterable[str]) -> NoReturn:
    """Raise the refusal for a user whose `role` here (None: not a member) is not one of `roles`."""
    if role is None:
        raise NotFoundError(f"No campaign {campaign_id}.")
    allowed = ", ".join(sorted(roles))
    raise PermissionDeniedError(f"This needs the role {allowed} in campaign {campaign_id}; you are {role}.")


def user_can(user: AbstractBaseUser, campaign: Campaign, roles: Iterable[str]) -> bool:
    """Tell whether the user may act in `roles` here, for pages that hide links rather than refuse."""
    return user.is_authenticated and (user.is_staff or role_of(user, campaign) in set(roles))


def may_create_campaigns(user: AbstractBaseUser) -> bool:
    """Tell whether the user may create campaigns: staff only, as `POST /api/v1/campaigns/` (API.md)."""
    return user.is_authenticated and user.is_staff


def require_campaign_creator(user: AbstractBaseUser) -> None:
    """Raise unless the user may create campaigns; the creator becomes the new campaign's first lead."""
    if not may_create_campaigns(user):
        raise PermissionDeniedError("Only staff create campaigns; ask a staff member to create one and make you lead.")


def may_reopen_campaigns(user: AbstractBaseUser) -> bool:
    """Tell whether the user may reopen a closed campaign: staff only, since closing is final for its leads."""
    return user.is_authenticated and user.is_staff


def membership_for(user: AbstractBaseUser, campaign_id: int, membership_id: int) -> Membership:
    """Return a membership of a campaign the user leads; one of another campaign answers like a missing id."""
    campaign = campaign_for(user, campaign_id, MANAGE)
    membership = Membership.objects.select_related("user").filter(pk=membership_id, campaign=campaign).first()
    if membership is None:
        raise NotFoundError(f"No member {membership_id} in campaign {campaign_id}.")
    membership.campaign = campaign
    return membership


def image_visible_to(user: AbstractBaseUser, image_sha256: str) -> bool:
    """Tell whether some campaign the user belongs to shows this image."""
    if not user.is_authenticated:
        return False
    return campaigns_visible_to(user).filter(items__image__sha256=image_sha256).exists()


def campaign_object_for(user: AbstractBaseUser, rows: QuerySet[T], pk: int, roles: Iterable[str], *, what: str) -> T:
    """Return the row of `rows` with this id (a job, run or snapshot) if the user holds one of `roles` in its
    campaign; strangers get the same 404 as for a missing id."""
    row = rows.filter(pk=pk).first()
    if row is None:
        raise NotFoundError(f"No {what} {pk}.")
    campaign_for(user, row.campaign_id, roles)
    return row


def import_job_for(user: AbstractBaseUser, job_id: int) -> ImportJob:
    """Return an import job if the user leads its campaign."""
    jobs = ImportJob.objects.select_related("created_by", "campaign")
    return campaign_object_for(user, jobs, job_id, MANAGE, what="import job")


def annotation_for(user: AbstractBaseUser, annotation_id: int, roles: Iterable[str]) -> Annotation:
    """Return an annotation if the user holds one of `roles` in its campaign; an annotator gets only their own.

    Another annotator's label answers like a missing id, as another's assignment does: they may not know it
    exists. A lead or researcher may read every label (`READ_DATA`) but is refused by role where only its
    annotator may act (`LABEL`).
    """
    rows = Annotation.objects.select_related("pair__item", "pair__a", "pair__b")
    annotation = rows.annotate(campaign_id=F("pair__campaign_id")).filter(pk=annotation_id).first()
    if annotation is None:
        raise NotFoundError(f"No annotation {annotation_id}.")
    campaign = campaign_for(user, annotation.campaign_id)
    if campaign.my_role == Role.ANNOTATOR and annotation.annotator_id != user.pk:
        raise NotFoundError(f"No annotation {annotation_id}.")
    if not user.is_staff and campaign.my_role not in roles:
        refuse(campaign_id=campaign.pk, role=campaign.my_role, roles=roles)
    return annotation
