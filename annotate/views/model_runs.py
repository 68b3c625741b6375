"""The reward-model page for leads and researchers: the active model, its learning curve and calibration,
the runs, the workers, and a lead's "Retrain now" (DESIGN.md, "The loop"; issue 4, item 5).

The running or queued run is a fragment that polls itself like an import job (STYLE.md, habit 6): while
the run is active it asks again after a second; once terminal the server answers 286 (stop polling) with
the final state and a link to reload the page, which then shows the new model. Annotators never reach
this page: model scores would bias their labels.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.http import reswap, retarget

from annotate import access, charts, selectors
from annotate.exceptions import ConflictError
from annotate.models import Campaign
from annotate.services.jobs import workers_online
from annotate.services.model_runs import model_run_request_by_lead
from annotate.views.auth import login_required
from annotate.views.errors import renders_errors
from annotate.views.polling import polled_fragment

PAGE_TEMPLATE = "model_runs/page.html"
RUN_TEMPLATE = f"{PAGE_TEMPLATE}#run-status"
FORM_TEMPLATE = f"{PAGE_TEMPLATE}#retrain-form"
CREATED_TEMPLATE = f"{PAGE_TEMPLATE}#run-created"
RECENT_RUNS = 20
ACCEPTED_STATUS = 202  # the run is queued, as POST /api/v1/campaigns/{id}/models/ answers


def _page(request: HttpRequest, campaign: Campaign, *, conflict: str = "", status: int = 200) -> TemplateResponse:
    """Render the whole page from the database: what the active model scores, and what is running."""
    card = selectors.model_card(campaign)
    curve = selectors.learning_curve(campaign)
    context = {
        "campaign": campaign,
        "can_retrain": access.user_can(request.user, campaign, access.MANAGE),
        "card": card,
        "curve": curve,
        "curve_chart": charts.learning_curve_chart(curve),
        "calibration_chart": charts.reliability_chart(card.calibration) if card and card.calibration else None,
        "live": selectors.model_run_live(campaign),
        "runs": list(selectors.model_runs_of(campaign)[:RECENT_RUNS]),
        "workers": workers_online(),
        "conflict": conflict,
    }
    return TemplateResponse(request, PAGE_TEMPLATE, context, status=status)


def _conflict(request: HttpRequest, campaign: Campaign, exc: ConflictError) -> TemplateResponse:
    """Show why no run was started: on the retrain form for htmx, on the whole page otherwise."""
    if not request.htmx:
        return _page(request, campaign, conflict=exc.message, status=exc.status_code)
    context = {"campaign": campaign, "can_retrain": True, "conflict": exc.message}
    response = TemplateResponse(request, FORM_TEMPLATE, context, status=exc.status_code)
    # The form posts into the live-run slot; a refused request replaces the form instead.
    return reswap(retarget(response, "#retrain-form"), "outerHTML")


def _retrain(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Queue a retrain for a lead; the new run's polling fragment for htmx, a redirect otherwise."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    try:
        run = model_run_request_by_lead(campaign=campaign, requested_by=request.user)
    except ConflictError as exc:
        return _conflict(request, campaign, exc)
    if not request.htmx:
        return redirect("model-page", campaign_id=campaign.pk)
    context = {"campaign": campaign, "run": run, "can_retrain": True}
    return TemplateResponse(request, CREATED_TEMPLATE, context, status=ACCEPTED_STATUS)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def model_page(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Show the campaign's reward model to leads and researchers; on POST a lead asks for a retrain."""
    if request.method == "POST":
        return _retrain(request, campaign_id)
    campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
    return _page(request, campaign)


@require_safe
@login_required
@renders_errors
def model_run_status(request: HttpRequest, run_id: int) -> HttpResponseBase:
    """Render one run's status fragment for htmx polling; a plain request goes to the model page."""
    run = selectors.model_run_for(request.user, run_id, access.READ_DATA)
    if not request.htmx:
        return redirect("model-page", campaign_id=run.campaign_id)
    context = {"run": run, "campaign": run.campaign}
    return polled_fragment(request, RUN_TEMPLATE, context, finished=run.is_terminal)
