"""The exports page for leads and researchers: the campaign's snapshots, a form for a new one, downloads.

Each snapshot that is not written yet is a fragment that polls itself like an import job (STYLE.md, habit
6): it asks again after a second, and once the snapshot is terminal the server answers 286 (stop polling)
with the final state and its download link. The file itself is served by the API's access-checked
download endpoint (`GET /api/v1/exports/{id}/download/`), which the browser's session authenticates.
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
from annotate.exports.filters import DEFAULT_TEST_SHARE, ExportFilters
from annotate.models import Campaign, ExportSnapshot
from annotate.services.exports import export_snapshot_create, export_snapshot_for, exports_of
from annotate.views.auth import login_required
from annotate.views.errors import INVALID_STATUS, renders_errors, service_errors_on_form
from annotate.views.polling import polled_fragment

PAGE_TEMPLATE = "exports/page.html"
SNAPSHOT_TEMPLATE = f"{PAGE_TEMPLATE}#snapshot-status"
FORM_TEMPLATE = f"{PAGE_TEMPLATE}#export-form"
CREATED_TEMPLATE = f"{PAGE_TEMPLATE}#snapshot-created"
RECENT_SNAPSHOTS = 20
ACCEPTED_STATUS = 202  # the snapshot is queued, as POST /api/v1/campaigns/{id}/exports/ answers
SERVICE_PREFIX = "filters."  # how the service names a filter in its errors
DEFAULT_FILTERS = ExportFilters().as_json()


class ExportForm(forms.Form):
    """Parse the form; what a valid filter is (ranges, which formats need images) is the service's business."""

    format = forms.ChoiceField(choices=ExportSnapshot.Format.choices, template_name="exports/format_field.html")
    container = forms.ChoiceField(
        choices=ExportSnapshot.Container.choices,
        required=False,
        initial=ExportSnapshot.Container.JSONL,
        template_name="exports/format_field.html",
    )
    min_agreement = forms.FloatField(
        required=False, initial=0.0, help_text="0 to 1: consensus probability or vote share."
    )
    min_labels = forms.IntegerField(required=False, initial=1, help_text="Labels behind a pair's label.")
    exclude_suspected_noise = forms.BooleanField(required=False, label="Leave out suspected noise")
    gold = forms.ChoiceField(
        choices=[("include", "Gold pairs in"), ("exclude", "Gold pairs out"), ("only", "Gold pairs only")],
        required=False,
    )
    labels = forms.ChoiceField(
        choices=[("human", "Human labels only"), ("with_priors", "Also prior labels where no human labeled")],
        required=False,
    )
    labeled_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    labeled_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    test_share = forms.FloatField(
        required=False, initial=DEFAULT_TEST_SHARE, help_text="Share of images in the test split: no image is in both."
    )
    images = forms.BooleanField(required=False, initial=True, label="Images and dataset card in a .zip")

    def clean_container(self) -> str:
        """Return the container asked for; a form posted without one gets the default, as the API does."""
        return self.cleaned_data["container"] or ExportSnapshot.Container.JSONL

    def filters(self) -> dict:
        """Return the filters given; an empty field takes the service's default."""
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if name not in ("format", "container") and value not in (None, "")
        }

    def add_service_errors(self, exc: ApplicationError) -> None:
        """Show the service's reasons on the fields it names (`filters.min_agreement` is `min_agreement` here)."""
        service_errors_on_form(self, exc.extra.get("fields") or {}, exc.message, prefix=SERVICE_PREFIX)


def filters_summary(filters: dict) -> str:
    """Say how a snapshot's filters differ from the defaults, in a line."""
    changed = [
        f"{name.replace('_', ' ')}: {value}" for name, value in filters.items() if DEFAULT_FILTERS.get(name) != value
    ]
    return " · ".join(changed) or "default filters"


def _shown(snapshots: list[ExportSnapshot]) -> list[ExportSnapshot]:
    for snapshot in snapshots:
        snapshot.filters_summary = filters_summary(snapshot.filters)
    return snapshots


def _page(
    request: HttpRequest, campaign: Campaign, *, form: ExportForm | None = None, status: int = 200
) -> TemplateResponse:
    context = {
        "campaign": campaign,
        "form": form or ExportForm(),
        "snapshots": _shown(list(exports_of(campaign)[:RECENT_SNAPSHOTS])),
    }
    return TemplateResponse(request, PAGE_TEMPLATE, context, status=status)


def _form_invalid(request: HttpRequest, campaign: Campaign, form: ExportForm) -> TemplateResponse:
    if not request.htmx:
        return _page(request, campaign, form=form, status=INVALID_STATUS)
    response = TemplateResponse(request, FORM_TEMPLATE, {"campaign": campaign, "form": form}, status=INVALID_STATUS)
    # The form posts into the snapshot list; a refused form replaces the form instead.
    return reswap(retarget(response, "#export-form"), "outerHTML")


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@renders_errors
def exports_page(request: HttpRequest, campaign_id: int) -> HttpResponseBase:
    """Show the campaign's snapshots and the new-export form; on POST ask for a snapshot."""
    campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
    if request.method != "POST":
        return _page(request, campaign)
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _form_invalid(request, campaign, form)
    try:
        snapshot = export_snapshot_create(
            campaign=campaign,
            format=form.cleaned_data["format"],
            filters=form.filters(),
            container=form.cleaned_data["container"],
            created_by=request.user,
        )
    except ApplicationError as exc:
        form.add_service_errors(exc)
        return _form_invalid(request, campaign, form)
    if not request.htmx:
        return redirect("exports-page", campaign_id=campaign.pk)
    context = {"campaign": campaign, "snapshot": _shown([snapshot])[0], "form": ExportForm()}
    return TemplateResponse(request, CREATED_TEMPLATE, context, status=ACCEPTED_STATUS)


@require_safe
@login_required
@renders_errors
def export_status(request: HttpRequest, snapshot_id: int) -> HttpResponseBase:
    """Render one snapshot's status fragment for htmx polling; a plain request goes to the exports page."""
    snapshot = export_snapshot_for(request.user, snapshot_id)
    if not request.htmx:
        return redirect("exports-page", campaign_id=snapshot.campaign_id)
    context = {"snapshot": _shown([snapshot])[0]}
    return polled_fragment(request, SNAPSHOT_TEMPLATE, context, finished=snapshot.is_terminal)
