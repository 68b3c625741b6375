"""Creating campaigns, changing their settings and status, and managing who is in them.

A campaign is active, paused (no new pairs are handed out) or closed. Closing is final for leads: a
closed campaign's labels are what exports and reports rest on, so only staff reopen it
(`campaign_status_set`); settings such as the name or instructions stay editable.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate import access, clock
from annotate.exceptions import ApplicationError, ConflictError, NotFoundError
from annotate.models import DEFAULT_STRENGTH_LABELS, Assignment, Campaign, Membership
from annotate.services.jobs import campaign_work_send
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
    "spans",
    "lease_seconds",
    "edit_window_minutes",
    "retrain_every",
    "max_extra_labels",
    "priority_weights",
    "surface_thresholds",
    "min_gold_accuracy",
    "gold_min_answered",
    "gold_feedback",
)

# Settings that change which pairs are surfaced and in what order: priorities are recomputed after them.
PRIORITY_SETTINGS = {"priority_weights", "surface_thresholds", "overlap", "max_extra_labels"}
# The bounds the REST API's input states too (annotate/api/campaigns.py).
MAX_EXTRA_LABELS = 10
MAX_STRENGTH_LABEL_LENGTH = 40
MAX_EDIT_WINDOW_MINUTES = 7 * 24 * 60  # a week: past it, a label is settled data others have trained on


def _validated(campaign: Campaign) -> Campaign:
    errors: dict[str, str] = {}
    if not 0.0 <= campaign.gold_share <= 1.0:
        errors["gold_share"] = f"Expected a share between 0 and 1, got {campaign.gold_share}."
    if not 0.0 <= campaign.min_gold_accuracy <= 1.0:
        errors["min_gold_accuracy"] = f"Expected an accuracy between 0 and 1, got {campaign.min_gold_accuracy}."
    if not 2 <= campaign.strength_scale <= 10:
        errors["strength_scale"] = f"Expected 2 to 10 strength levels, got {campaign.strength_scale}."
    errors.update(_strength_labels_errors(campaign))
    if campaign.overlap < 1:
        errors["overlap"] = f"Expected at least one label per pair, got {campaign.overlap}."
    if campaign.lease_seconds < 30:
        errors["lease_seconds"] = f"Expected a lease of at least 30 seconds, got {campaign.lease_seconds}."
    if campaign.edit_window_minutes > MAX_EDIT_WINDOW_MINUTES:
        errors["edit_window_minutes"] = (
            f"Expected an edit window of 0 to {MAX_EDIT_WINDOW_MINUTES} minutes, got {campaign.edit_window_minutes}."
        )
    if campaign.retrain_every < 1:
        errors["retrain_every"] = f"Expected at least one new label between retrains, got {campaign.retrain_every}."
    if not 0 <= campaign.max_extra_labels <= MAX_EXTRA_LABELS:
        errors["max_extra_labels"] = (
            f"Expected 0 to {MAX_EXTRA_LABELS} extra labels per surfaced pair, got {campaign.max_extra_labels}."
        )
    errors.update(weights_errors(campaign.priority_weights or {}, campaign.surface_thresholds or {}))
    try:
        campaign.full_clean()
    except ValidationError as exc:
        # The messages above name the expected range; Django's generic ones only fill the gaps.
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, " ".join(messages))
    if errors:
        raise ApplicationError("The campaign settings are not valid.", extra={"fields": errors})
    return campaign


def _strength_labels_errors(campaign: Campaign) -> dict[str, str]:
    labels = campaign.strength_labels
    if not labels:
        return {}
    if len(labels) != campaign.strength_scale:
        message = f"Expected {campaign.strength_scale} labels, one per strength level, got {len(labels)}."
        return {"strength_labels": message}
    if any(not str(label).strip() or len(str(label)) > MAX_STRENGTH_LABEL_LENGTH for label in labels):
        return {"strength_labels": f"Expected labels of 1 to {MAX_STRENGTH_LABEL_LENGTH} characters, got {labels}."}
    return {}


def _refuse_unknown(settings: dict[str, Any]) -> None:
    unknown = sorted(set(settings) - set(EDITABLE_SETTINGS))
    if unknown:
        raise ApplicationError(f"Unknown campaign settings: {', '.join(unknown)}.")


def campaign_create(*, created_by: AbstractBaseUser, name: str, **settings: Any) -> Campaign:
    """Create a campaign and make its creator the first lead.

    One creator never has two campaigns of one name, so a form submitted twice creates one campaign.
    """
    _refuse_unknown(settings)
    campaign = Campaign(name=name, created_by=created_by, **settings)
    if not campaign.strength_labels and campaign.strength_scale == len(DEFAULT_STRENGTH_LABELS):
        campaign.strength_labels = list(DEFAULT_STRENGTH_LABELS)
    _validated(campaign)
    with transaction.atomic():
        # The creator's requests run one at a time: the second of a double submit finds the first's campaign.
        get_user_model().objects.select_for_update().filter(pk=created_by.pk).first()
        if Campaign.objects.filter(created_by=created_by, name=name).exists():
            raise ConflictError(
                f"You already created a campaign named {name!r}.",
                extra={"fields": {"name": f"You already created a campaign named {name!r}; pick another name."}},
            )
        campaign.save()
        Membership.objects.create(campaign=campaign, user=created_by, role=Membership.Role.LEAD)
    return campaign


def _campaign_save(campaign: Campaign, changes: dict[str, Any], *, may_reopen: bool) -> Campaign:
    """Apply `changes`, validate and save those fields only; a refused change leaves the campaign as it was.

    Only the changed columns are written: a full save would put back stale counters (`human_labels` is
    raised in the submit transaction) and a stale `active_model`.
    """
    _refuse_unknown(changes)
    with transaction.atomic():
        # The stored status, locked: a pause and a close sent at once are applied one after the other.
        stored_status = Campaign.objects.select_for_update().values_list("status", flat=True).get(pk=campaign.pk)
        reopening = stored_status == Campaign.Status.CLOSED and changes.get("status", stored_status) != stored_status
        if reopening and not may_reopen:
            raise ConflictError(f"Campaign {campaign.pk} is closed; only staff can reopen it.")
        for field, value in changes.items():
            setattr(campaign, field, value)
        try:
            _validated(campaign)
        except ApplicationError:
            campaign.refresh_from_db(fields=list(changes))
            raise
        campaign.save(update_fields=list(changes))
        if PRIORITY_SETTINGS & set(changes) and campaign.active_model_id is not None:
            transaction.on_commit(lambda: campaign_work_send("priorities_refresh", campaign_id=campaign.pk))
    return campaign


def campaign_update(*, campaign: Campaign, **changes: Any) -> Campaign:
    """Change a campaign's settings; new overlap applies to pairs that still need labels.

    A closed campaign is not reopened here (`campaign_status_set` is how staff do it).
    """
    return _campaign_save(campaign, changes, may_reopen=False)


def campaign_status_set(*, campaign: Campaign, status: str, by: AbstractBaseUser) -> Campaign:
    """Pause, resume or close a campaign; only staff reopen a closed one."""
    return _campaign_save(campaign, {"status": status}, may_reopen=access.may_reopen_campaigns(by))


def _refuse_losing_the_last_lead(membership: Membership) -> None:
    """Raise unless the campaign keeps a lead without this member; the leads stay locked till commit."""
    if membership.role != Membership.Role.LEAD:
        return
    leads = Membership.objects.select_for_update().filter(campaign_id=membership.campaign_id, role=membership.role)
    if len(leads.values_list("pk", flat=True)) <= 1:
        raise ConflictError(
            f"{membership.user} is the only lead of campaign {membership.campaign_id}, and a campaign needs one; "
            "make another member lead first."
        )


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
    with transaction.atomic():
        current = Membership.objects.select_for_update().filter(campaign=campaign, user=user).first()
        if current is not None and role != current.role:
            _refuse_losing_the_last_lead(current)
        membership, _ = Membership.objects.update_or_create(campaign=campaign, user=user, defaults={"role": role})
    return membership


def membership_pause(*, membership: Membership, reason: str) -> Membership:
    """Stop handing pairs to an annotator (a lead's decision, or failed gold); their labels so far stay."""
    if membership.role != Membership.Role.ANNOTATOR:
        raise ConflictError(f"Only annotators are paused; {membership.user} is a {membership.role} here.")
    membership.paused_at = membership.paused_at or clock.now()
    membership.paused_reason = reason
    membership.save(update_fields=["paused_at", "paused_reason"])
    return membership


def membership_resume(*, membership: Membership) -> Membership:
    """Let a paused member label again; gold accuracy is judged afresh, on gold answers given from now on."""
    membership.paused_at = None
    membership.paused_reason = ""
    membership.gold_since = clock.now()
    membership.save(update_fields=["paused_at", "paused_reason", "gold_since"])
    return membership


def membership_remove(*, membership: Membership) -> None:
    """Take a user out of a campaign; their labels stay (pseudonymous), open leases return to the pool.

    A campaign keeps at least one lead, so nobody can lock every lead out.
    """
    campaign = membership.campaign
    with transaction.atomic():
        _refuse_losing_the_last_lead(membership)
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
