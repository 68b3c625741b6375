"""Creating campaigns and managing who is in them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate import clock
from annotate.exceptions import ApplicationError, ConflictError, NotFoundError
from annotate.models import DEFAULT_STRENGTH_LABELS, Assignment, Campaign, Membership
from annotate.services.model_runs import campaign_work_send
from annotate.services.priorities import weights_errors

# Settings a lead may change after creation; anything else is refused by name.
EDITABLE_SETTINGS = (
    "name",
    "instructions",
    "status",
    "overlap",
    "strength_scale",
    "strength_labels",
    "show_facts",
    "gold_share",
    "rationale_required",
    "lease_seconds",
    "retrain_every",
    "max_extra_labels",
    "priority_weights",
    "surface_thresholds",
    "min_gold_accuracy",
    "gold_min_answered",
)

# Settings that change which pairs are surfaced and in what order: priorities are recomputed after them.
PRIORITY_SETTINGS = {"priority_weights", "surface_thresholds", "overlap", "max_extra_labels"}


def _validated(campaign: Campaign) -> Campaign:
    errors: dict[str, str] = {}
    if not 0.0 <= campaign.gold_share <= 1.0:
        errors["gold_share"] = f"Expected a share between 0 and 1, got {campaign.gold_share}."
    if not 2 <= campaign.strength_scale <= 10:
        errors["strength_scale"] = f"Expected 2 to 10 strength levels, got {campaign.strength_scale}."
    if campaign.strength_labels and len(campaign.strength_labels) != campaign.strength_scale:
        errors["strength_labels"] = (
            f"Expected {campaign.strength_scale} labels, one per strength level, got {len(campaign.strength_labels)}."
        )
    if campaign.overlap < 1:
        errors["overlap"] = f"Expected at least one label per pair, got {campaign.overlap}."
    if campaign.lease_seconds < 30:
        errors["lease_seconds"] = f"Expected a lease of at least 30 seconds, got {campaign.lease_seconds}."
    errors.update(weights_errors(campaign.priority_weights or {}, campaign.surface_thresholds or {}))
    try:
        campaign.full_clean()
    except ValidationError as exc:
        errors.update({field: " ".join(messages) for field, messages in exc.message_dict.items()})
    if errors:
        raise ApplicationError("The campaign settings are not valid.", extra={"fields": errors})
    return campaign


def campaign_create(*, created_by: AbstractBaseUser, name: str, **settings: Any) -> Campaign:
    """Create a campaign and make its creator the first lead."""
    unknown = sorted(set(settings) - set(EDITABLE_SETTINGS))
    if unknown:
        raise ApplicationError(f"Unknown campaign settings: {', '.join(unknown)}.")
    campaign = Campaign(name=name, created_by=created_by, **settings)
    if not campaign.strength_labels and campaign.strength_scale == len(DEFAULT_STRENGTH_LABELS):
        campaign.strength_labels = list(DEFAULT_STRENGTH_LABELS)
    with transaction.atomic():
        _validated(campaign).save()
        Membership.objects.create(campaign=campaign, user=created_by, role=Membership.Role.LEAD)
    return campaign


def campaign_update(*, campaign: Campaign, **changes: Any) -> Campaign:
    """Change a campaign's settings; new overlap applies to pairs that still need labels."""
    unknown = sorted(set(changes) - set(EDITABLE_SETTINGS))
    if unknown:
        raise ApplicationError(f"Unknown campaign settings: {', '.join(unknown)}.")
    for field, value in changes.items():
        setattr(campaign, field, value)
    with transaction.atomic():
        _validated(campaign).save()
        if PRIORITY_SETTINGS & set(changes) and campaign.active_model_id is not None:
            transaction.on_commit(lambda: campaign_work_send("priorities_refresh", campaign_id=campaign.pk))
    return campaign


def membership_set(*, campaign: Campaign, username: str, role: str) -> Membership:
    """Add a user to a campaign with a role, or change the role they have."""
    if role not in Membership.Role.values:
        raise ApplicationError(
            f"Unknown role {role!r}; expected one of {', '.join(Membership.Role.values)}.",
            extra={"fields": {"role": "Unknown role."}},
        )
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFoundError(f"No user named {username!r}.", extra={"fields": {"username": "No such user."}})
    membership, _ = Membership.objects.update_or_create(campaign=campaign, user=user, defaults={"role": role})
    return membership


def membership_pause(*, membership: Membership, reason: str) -> Membership:
    """Stop handing pairs to a member (a lead's decision, or failed gold); their labels so far stay."""
    membership.paused_at = membership.paused_at or clock.now()
    membership.paused_reason = reason
    membership.save(update_fields=["paused_at", "paused_reason"])
    return membership


def membership_resume(*, membership: Membership) -> Membership:
    """Let a paused member label again; gold accuracy is judged afresh from the next gold answer on."""
    membership.paused_at = None
    membership.paused_reason = ""
    membership.save(update_fields=["paused_at", "paused_reason"])
    return membership


def membership_remove(*, membership: Membership) -> None:
    """Take a user out of a campaign; their labels stay (pseudonymous), open leases return to the pool.

    A campaign keeps at least one lead, so nobody can lock every lead out.
    """
    campaign = membership.campaign
    with transaction.atomic():
        leads = Membership.objects.select_for_update().filter(campaign=campaign, role=Membership.Role.LEAD)
        if membership.role == Membership.Role.LEAD and leads.count() <= 1:
            raise ConflictError("A campaign needs at least one lead; add another lead before removing this one.")
        Assignment.objects.filter(
            pair__campaign=campaign, annotator=membership.user, status=Assignment.Status.LEASED
        ).update(status=Assignment.Status.SKIPPED, finished_at=clock.now())
        membership.delete()


def user_create(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """Create a login; passwords go through Django's validators."""
    User = get_user_model()
    user = User(username=username, email=email)
    try:
        user.full_clean(exclude=["password"], validate_unique=False)  # a taken name is a 409, below
        validate_password(password, user)
    except ValidationError as exc:
        fields = getattr(exc, "message_dict", {"password": exc.messages})
        raise ApplicationError(
            "The user is not valid.", extra={"fields": {k: " ".join(v) for k, v in fields.items()}}
        ) from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise ConflictError(f"A user named {username!r} already exists.") from exc
    return user
