"""The lead's import page: upload a package, then watch its job in a fragment that polls itself.

A file in no known layout goes through the mapping page first: "Preview and map columns" keeps the upload,
the mapping page shows its first rows and a form mapping its columns, and importing queues a job that
reads every line through that mapping (`annotate.services.import_mappings`). A saved mapping is picked on
the upload form for the next file.

The status fragment is built from the ImportJob row alone (STYLE.md, habit 6): while the job runs it
asks again after a second (`hx-trigger="load delay:1s"`, `hx-swap="outerHTML"`); once the job is
terminal the fragment has no trigger and the server answers 286 (stop polling) with the final state.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from annotate import access
from annotate.exceptions import ApplicationError
from annotate.models import Campaign, ImportJob, ImportUpload
from annotate.services.import_mappings import (
    UploadPreview,
    import_job_from_upload,
    import_mapping_names,
    import_mapping_saved,
    import_upload_create,
    import_upload_for,
    import_upload_preview,
)
from annotate.services.imports import PACKAGE_SUFFIXES, import_job_create
from annotate.views.auth import login_required
from annotate.views.errors import INVALID_STATUS, renders_errors, service_errors_on_form
from annotate.views.import_forms import MappingForm, mapping_initial
from annotate.views.polling import polled_fragment

PAGE_TEMPLATE = "imports/page.html"
MAP_TEMPLATE = "imports/map.html"
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
    mapping = forms.ChoiceField(
        required=False,
        label="Column mapping",
        help_text="A mapping saved for this campaign, for a file in no layout the importer knows.",
    )

    def __init__(self, *args, mappings: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mapping"].choices = [("", "None: the file's own layout"), *((name, name) for name in mappings)]
        self.has_mappings = bool(mappings)  # the field is shown only then


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
        "form": form or _upload_form(campaign),
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
    form = _upload_form(campaign, request)
    if not form.is_valid():
        return _form_invalid(request, campaign, form, [])
    try:
        job = import_job_create(
            campaign=campaign,
            upload=form.cleaned_data["file"],
            mapping=form.cleaned_data["mapping"] or None,
            created_by=request.user,
        )
    except ApplicationError as exc:
        service_errors_on_form(form, exc.extra.get("fields") or {}, exc.message)
        return _form_invalid(request, campaign, form, exc.extra.get("errors", []))
    if not request.htmx:
        return redirect("import-status", job_id=job.pk)
    context = {"campaign": campaign, "job": job, "form": _upload_form(campaign)}
    return TemplateResponse(request, CREATED_TEMPLATE, context, status=ACCEPTED_STATUS)


def _upload_form(campaign: Campaign, request: HttpRequest | None = None) -> UploadForm:
    """The upload form, bound to the request's POST when given, offering the campaign's saved mappings."""
    data = (request.POST, request.FILES) if request is not None else ()
    return UploadForm(*data, mappings=import_mapping_names(campaign=campaign))


@require_http_methods(["POST"])
@login_required
@renders_errors
def import_preview(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Keep the uploaded file and go to its mapping page, starting from the saved mapping picked, if any."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    form = _upload_form(campaign, request)
    if not form.is_valid():
        return _form_invalid(request, campaign, form, [])
    try:
        upload = import_upload_create(campaign=campaign, upload=form.cleaned_data["file"], created_by=request.user)
    except ApplicationError as exc:
        service_errors_on_form(form, exc.extra.get("fields") or {}, exc.message)
        return _form_invalid(request, campaign, form, [])
    url = reverse("import-map", args=[campaign.pk, upload.pk])
    if form.cleaned_data["mapping"]:
        url += "?" + urlencode({"mapping": form.cleaned_data["mapping"]})
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def import_map(request: HttpRequest, campaign_id: int, upload_id: int) -> HttpResponseBase:
    """Show an upload's first rows and the mapping form; on POST import it through the mapping."""
    campaign = access.campaign_for(request.user, campaign_id, access.MANAGE)
    upload = import_upload_for(campaign=campaign, upload_id=upload_id)
    shown = import_upload_preview(upload=upload)
    if request.method != "POST":
        saved = import_mapping_saved(campaign=campaign, name=request.GET.get("mapping", ""))
        form = MappingForm(columns=shown.preview.columns, initial=saved and mapping_initial(saved.mapping))
        return _map_page(request, upload, shown, form)
    form = MappingForm(request.POST, columns=shown.preview.columns)
    if not form.is_valid():
        return _map_page(request, upload, shown, form, status=INVALID_STATUS)
    try:
        job = import_job_from_upload(
            upload=upload, mapping=form.mapping(), save_as=form.cleaned_data["save_as"].strip(), created_by=request.user
        )
    except ApplicationError as exc:
        form.add_service_errors(exc)
        return _map_page(request, upload, shown, form, status=INVALID_STATUS)
    return redirect("import-status", job_id=job.pk)


def _map_page(
    request: HttpRequest, upload: ImportUpload, shown: UploadPreview, form: MappingForm, *, status: int = 200
) -> TemplateResponse:
    context = {
        "campaign": upload.campaign,
        "upload": upload,
        "shown": shown,
        "form": form,
        "mappings": import_mapping_names(campaign=upload.campaign),
    }
    return TemplateResponse(request, MAP_TEMPLATE, context, status=status)


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
