"""The annotator's "My work" page: their own labels in a campaign, newest first, with time spent (issue 18).

It is the labeling page's companion, so it follows its rule (`access.LABEL`): annotators, and staff who act
as one; a lead or researcher gets 403 (they read everyone's labels on the dashboard and over the API), a
stranger 404. The filter is a plain GET form (`?answer=left&labeled_from=2026-01-01&page=2`), so links
work without JS; a filter that does not parse is shown on the form with its reason, and lists nothing.
"""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.http import require_safe

from annotate import access
from annotate.models import Campaign
from annotate.my_work import ANSWERS, GOLD_MISSED, GOLD_ONLY, WorkFilters, my_labels, my_work_rows, my_work_summary
from annotate.views.auth import login_required
from annotate.views.errors import renders_errors

PAGE_TEMPLATE = "my_work/page.html"
PER_PAGE = 25
BAD_FILTER_STATUS = 400
GOLD_CHOICES = [("", "All labels"), (GOLD_ONLY, "Gold pairs only"), (GOLD_MISSED, "Gold pairs I missed")]


class WorkFilterForm(forms.Form):
    """Parse the filter; the gold choice exists only where the campaign gives gold feedback."""

    answer = forms.ChoiceField(choices=[("", "Any answer"), *ANSWERS.items()], required=False, label="Your answer")
    labeled_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    labeled_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    gold = forms.ChoiceField(choices=GOLD_CHOICES, required=False, label="Gold pairs")

    def __init__(self, *args, campaign: Campaign, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not campaign.gold_feedback:
            del self.fields["gold"]  # a gold filter would tell which pairs are gold

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("labeled_from"), data.get("labeled_to")
        if start and end and start > end:
            self.add_error("labeled_to", f"The range ends ({end}) before it starts ({start}).")
        return data

    def filters(self) -> WorkFilters:
        return WorkFilters(**{name: value for name, value in self.cleaned_data.items() if value})

    @property
    def is_filtered(self) -> bool:
        return self.is_valid() and any(self.cleaned_data.values())


@require_safe
@login_required
@renders_errors
def my_work_page(request: HttpRequest, campaign_id: int) -> TemplateResponse:
    """List the signed-in annotator's labels in this campaign, 25 a page, with a summary of the filtered set."""
    campaign = access.campaign_for(request.user, campaign_id, access.LABEL)
    form = WorkFilterForm(request.GET, campaign=campaign)
    context = {"campaign": campaign, "form": form}
    if not form.is_valid():
        return TemplateResponse(request, PAGE_TEMPLATE, context, status=BAD_FILTER_STATUS)
    labels = my_labels(campaign=campaign, annotator=request.user, filters=form.filters())
    page = Paginator(labels, PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context.update(
        page=page,
        rows=my_work_rows(page.object_list, campaign=campaign),
        summary=my_work_summary(labels, campaign=campaign),
        query=query.urlencode(),
    )
    return TemplateResponse(request, PAGE_TEMPLATE, context)
