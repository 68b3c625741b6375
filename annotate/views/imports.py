"""The lead's import page: upload a package, then watch its job in a fragment that polls itself.

The status fragment is built from the ImportJob row alone (STYLE.md, habit 6): while the job runs it
asks again after a second (`hx-trigger="load delay:1s"`, `hx-swap="outerHTML"`); once the job is
terminal the fragment has no trigger and the server answers 286 (stop polling) with the final state.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.http import reswap, retarget

from annotate import access
from annotate.exceptions import ApplicationError
from annotate.models import Campaign, ImportJob
from annotate.services.imports import PACKAGE_SUFFIXES, import_job_create
from annotate.views.auth import login_required
from annotate.views.errors import INVALID_STATUS, renders_errors, service_errors_on_form
from annotate.views.polling import polled_fragment

PAGE_TEMPLATE = "imports/page.html"
JOB_TEMPLATE = f"{PAGE_TEMPLATE}#job-status"
FORM_TEMPLATE = f"{PAGE_TEMPLATE}#upload-form"
CREATED_TEMPLATE = f"{PAGE_TEMPLATE}#upload-created"
RECENT_JOBS = 10
ACCEPTED_STATUS = 202  # the job is queued, as POST /api/v1/campaigns/{id}/imports/ answers


class UploadForm(forms.Form):
    """Parse the upload; what a valid package is (format, size, lines) is the import service's business."""

    file = forms.FileField(
        label="Package",
        help_text=(
            "Items, responses, pairs, facts, prior and gold labels, one item per line; or public preference rows"
            " as published: a .json array, Parquet (a .parquet, or a zipped Hugging Face dataset folder)."
        ),
        widget=forms.FileInput(attrs={"accept": ",".join(PACKAGE_SUFFIXES)}),
        error_messages={"required": "Choose a .zip, .jsonl, .json or .parquet file to import."},
    )


def _page(
    request: HttpRequest,
    campaign: Campaign,
    *,
    form: UploadForm | None = None,
    job: ImportJob | None = None,
    upload_errors: list[dict] | None = None,
    status: int = 200,
) -> TemplateResponse:
    """Render the whole page: the form and the recent jobs, `job` among them even when it is older."""
    jobs = list(campaign.import_jobs.select_related("created_by")[:RECENT_JOBS])
    if job is not None and job not in jobs:
        jobs.insert(0, job)
    context = {
        "campaign": campaign,
        "form": form or UploadForm(),
        "upload_errors": upload_errors or [],
        "jobs": jobs,
    }
    return TemplateResponse(request, PAGE_TEMPLATE, context, status=status)


def _form_invalid(
    request: HttpRequest, campaign: Campaign, form: UploadForm, upload_errors: list[dict]
) -> TemplateResponse:
    if not request.htmx:
        return _page(request, campaign, form=form, upload_errors=upload_errors, status=INVALID_STATUS)
    context = {"campaign": campaign, "form": form, "upload_errors": upload_errors}
    response = TemplateResponse(request, FORM_TEMPLATE, context, status=INVALID_STATUS)
    # The form posts into the job list; a refused upload replaces the form instead.
    return reswap(retarget(response, "#upload-form"), "outerHTML")


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def import_page(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Show the upload form and recent jobs; on POST start an import job for the uploaded package."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    if request.method != "POST":
        return _page(request, campaign)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _form_invalid(request, campaign, form, [])
    try:
        job = import_job_create(campaign=campaign, upload=form.cleaned_data["file"], created_by=request.user)
    except ApplicationError as exc:
        service_errors_on_form(form, exc.extra.get("fields") or {}, exc.message)
        return _form_invalid(request, campaign, form, exc.extra.get("errors", []))
    if not request.htmx:
        return redirect("import-status", job_id=job.pk)
    context = {"campaign": campaign, "job": job, "form": UploadForm()}
    return TemplateResponse(request, CREATED_TEMPLATE, context, status=ACCEPTED_STATUS)


@require_safe
@login_required
@renders_errors
def import_status(request: HttpRequest, job_id: int) -> HttpResponseBase:
    """Render one job's status fragment for htmx polling, or the import page around it."""
    job = access.import_job_for(request.user, job_id)
    campaign = job.campaign
    if not request.htmx:
        return _page(request, campaign, job=job)
    return polled_fragment(request, JOB_TEMPLATE, {"job": job}, finished=job.is_terminal)
