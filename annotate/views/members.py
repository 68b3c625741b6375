"""A lead's members page: who is in the campaign, in which role, paused or not, with how many labels.

Adding a member and changing a role are one form (`membership_set` does both); pausing, resuming and
removing are buttons on each row. Every POST re-renders the members panel for htmx, or redirects
(success) or shows the page with the refusal (its own status code) without JS. The services refuse
what would leave a campaign without a lead, and pause annotators only.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotate import access, selectors
from annotate.exceptions import ApplicationError, ConflictError
from annotate.models import Campaign, Membership
from annotate.services.campaigns import membership_pause, membership_remove, membership_resume, membership_set
from annotate.views.auth import login_required
from annotate.views.campaign_forms import InviteForm, MemberActionForm, posted_choice
from annotate.views.errors import INVALID_STATUS, renders_errors, service_errors_on_form

PAGE_TEMPLATE = "campaigns/members.html"
PANEL_TEMPLATE = f"{PAGE_TEMPLATE}#members-panel"


def _render(
    request: HttpRequest,
    campaign: Campaign,
    *,
    form: InviteForm | None = None,
    notice: str = "",
    refusal: str = "",
    status: int = 200,
) -> TemplateResponse:
    """Render the members panel (htmx) or the page around it."""
    context = {
        "campaign": campaign,
        "members": selectors.campaign_members(campaign),
        "roles": Membership.Role.choices,
        "form": form or InviteForm(),
        "notice": notice,
        "refusal": refusal,
    }
    template = PANEL_TEMPLATE if request.htmx else PAGE_TEMPLATE
    return TemplateResponse(request, template, context, status=status)


def _done(request: HttpRequest, campaign: Campaign, notice: str) -> HttpResponseBase:
    """After a change: the fresh panel for htmx, a redirect to the page otherwise (reloads repeat nothing)."""
    if not request.htmx:
        messages.success(request, notice)
        return redirect("campaign-members", campaign_id=campaign.pk)
    return _render(request, campaign, notice=notice)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def members_page(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """List the members to a lead; on POST add a user with a role, or change the role they have."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    if request.method != "POST":
        return _render(request, campaign)
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            membership = membership_set(campaign=campaign, **form.cleaned_data)
        except ApplicationError as exc:
            fields = exc.extra.get("fields") or {}
            service_errors_on_form(form, fields, exc.message)
            status = INVALID_STATUS if fields else exc.status_code
            return _render(request, campaign, form=form, status=status)
        return _done(request, campaign, f"{membership.user} is {membership.get_role_display().lower()}.")
    return _render(request, campaign, form=form, status=INVALID_STATUS)


def _apply(action: str, membership: Membership, reason: str) -> str:
    """Carry out one action on a member and return what to tell the lead."""
    if action == "pause":
        membership_pause(membership=membership, reason=reason)
        return f"{membership.user} is paused."
    if action == "resume":
        membership_resume(membership=membership)
        return f"{membership.user} may label again."
    membership_remove(membership=membership)
    return f"{membership.user} was removed from the campaign."


@require_POST
@login_required
@renders_errors
def member_update(request: HttpRequest, campaign_id: int, membership_id: int) -> HttpResponseBase:
    """Pause, resume or remove one member; a lead who removes themselves goes back to their campaigns."""
    membership = access.membership_for(request.user, campaign_id, membership_id)
    campaign = membership.campaign
    form = MemberActionForm(request.POST)
    action = posted_choice(form, "action")
    try:
        notice = _apply(action, membership, form.cleaned_data["reason"])
    except ConflictError as exc:
        return _render(request, campaign, refusal=exc.message, status=exc.status_code)
    if not access.user_can(request.user, campaign, access.MANAGE):
        messages.success(request, notice)
        home = reverse("campaign-list")
        return HttpResponseClientRedirect(home) if request.htmx else redirect(home)
    return _done(request, campaign, notice)
