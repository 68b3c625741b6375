"""Campaign pages: the home list, a staff member's "New campaign", and a lead's settings and status.

The settings form parses only; `campaign_create` and `campaign_update` decide what is valid, and their
per-field messages are shown on the fields. The form saves what changed and nothing else, so a form
submitted twice changes the campaign once. With htmx, the form swaps itself (errors or "Settings
saved"); without JS, a POST is answered by a redirect, or by the page with the errors (422).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from annotate import access
from annotate.exceptions import ApplicationError
from annotate.models import DEFAULT_STRENGTH_LABELS, Campaign
from annotate.selectors import campaign_rows
from annotate.services.campaigns import campaign_create, campaign_status_set, campaign_update
from annotate.views.auth import login_required
from annotate.views.campaign_forms import CampaignForm, StatusForm, posted_choice
from annotate.views.errors import INVALID_STATUS, renders_errors

SETTINGS_TEMPLATE = "campaigns/settings.html"
FORM_TEMPLATE = f"{SETTINGS_TEMPLATE}#settings-form"
STATUS_TEMPLATE = f"{SETTINGS_TEMPLATE}#status-card"
PREVIEW_TEMPLATE = f"{SETTINGS_TEMPLATE}#instructions-preview"
SAVED_MESSAGE = "Settings saved."


@require_safe
@login_required
def campaign_list(request: HttpRequest) -> TemplateResponse:
    """List the user's campaigns with what their role allows there; staff also get "New campaign"."""
    context = {"rows": campaign_rows(request.user), "can_create": access.may_create_campaigns(request.user)}
    return TemplateResponse(request, "campaigns/list.html", context)


def _form_response(
    request: HttpRequest, campaign: Campaign | None, form: CampaignForm, *, saved: str = "", status: int = 200
) -> TemplateResponse:
    """Render the settings form: alone for htmx (it swaps itself, `saved` on top), in the whole page otherwise."""
    context = {
        "campaign": campaign,
        "form": form,
        "saved": saved,
        "can_reopen": access.may_reopen_campaigns(request.user),
    }
    template = FORM_TEMPLATE if request.htmx else SETTINGS_TEMPLATE
    return TemplateResponse(request, template, context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def campaign_new(request: HttpRequest) -> HttpResponseBase:
    """Show the new-campaign form to staff; on POST create the campaign, its creator as first lead."""
    access.require_campaign_creator(request.user)
    if request.method != "POST":
        defaults = Campaign(strength_labels=list(DEFAULT_STRENGTH_LABELS))
        return _form_response(request, None, CampaignForm(initial=CampaignForm.initial_from(defaults)))
    form = CampaignForm(request.POST)
    if form.is_valid():
        try:
            campaign = campaign_create(created_by=request.user, **form.settings())
        except ApplicationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Campaign {campaign.name!r} created. Add its members and import its data next.")
            url = reverse("campaign-settings", kwargs={"campaign_id": campaign.pk})
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return _form_response(request, None, form, status=INVALID_STATUS)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def campaign_settings(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Show a campaign's settings to its leads; on POST save the settings that changed."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    initial = CampaignForm.initial_from(campaign)
    if request.method != "POST":
        return _form_response(request, campaign, CampaignForm(initial=initial))
    form = CampaignForm(request.POST, initial=initial)
    if form.is_valid():
        try:
            campaign_update(campaign=campaign, **form.changes_from(campaign))
        except ApplicationError as exc:
            form.add_service_errors(exc)
        else:
            if not request.htmx:
                messages.success(request, SAVED_MESSAGE)
                return redirect("campaign-settings", campaign_id=campaign.pk)
            fresh = CampaignForm(initial=CampaignForm.initial_from(campaign))
            return _form_response(request, campaign, fresh, saved=SAVED_MESSAGE)
    return _form_response(request, campaign, form, status=INVALID_STATUS)


@require_POST
@login_required
@renders_errors
def campaign_status(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Pause, resume or close a campaign (its leads), or reopen a closed one (staff); refusals go to the flash."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    status = posted_choice(StatusForm(request.POST), "status")
    campaign_status_set(campaign=campaign, status=status, by=request.user)
    notice = f"The campaign is {campaign.get_status_display().lower()}."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("campaign-settings", campaign_id=campaign.pk)
    context = {"campaign": campaign, "can_reopen": access.may_reopen_campaigns(request.user), "notice": notice}
    return TemplateResponse(request, STATUS_TEMPLATE, context)


@require_POST
@login_required
def instructions_preview(request: HttpRequest) -> TemplateResponse:
    """Render posted Markdown as annotators would see it; it reads nothing stored, so any signed-in user may."""
    return TemplateResponse(request, PREVIEW_TEMPLATE, {"instructions": request.POST.get("instructions", "")})
