"""The surfaced pairs for leads and researchers: the model's scores beside the human labels, by reason.

A pair is surfaced when the active model is unsure of it, a text-only model answers it (a shortcut), the
model contradicts its label (suspected noise), or annotators disagree (services/priorities.py). The
filter is a plain GET query (`?reason=shortcut&page=2`), so links work without JS; with htmx, only the
results region is swapped and the URL is pushed. Annotators never see this page.
"""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

from annotate import access, selectors
from annotate.exceptions import ApplicationError
from annotate.services.priorities import REASONS
from annotate.views.auth import login_required
from annotate.views.errors import renders_errors

PAGE_TEMPLATE = "surfaced/page.html"
RESULTS_TEMPLATE = f"{PAGE_TEMPLATE}#surfaced-results"
PER_PAGE = 50
# Reason keys as the filter shows them; every key of services.priorities.REASONS needs one.
REASON_LABELS = {
    "uncertain": "Uncertain",
    "shortcut": "Shortcut",
    "suspected_noise": "Suspected noise",
    "disagreement": "Disagreement",
}
assert set(REASON_LABELS) == set(REASONS), "one label per surfacing reason"


class FilterForm(forms.Form):
    """Parse the filter; an unknown reason is refused rather than silently showing every pair."""

    reason = forms.ChoiceField(choices=[("", "All"), *REASON_LABELS.items()], required=False)

    def reason_or_error(self) -> str:
        """Return the chosen reason ("" for all), or raise the 400 that names the valid ones."""
        if not self.is_valid():
            valid = ", ".join(REASON_LABELS)
            raise ApplicationError(f"Expected a reason among {valid}; got {self.data.get('reason')!r}.")
        return self.cleaned_data["reason"]


@require_safe
@login_required
@renders_errors
def surfaced_page(request: HttpRequest, campaign_id: int) -> TemplateResponse:
    """List the campaign's surfaced pairs, most urgent first, 50 a page, optionally for one reason."""
    campaign = access.campaign_for(request.user, campaign_id, access.READ_DATA)
    reason = FilterForm(request.GET).reason_or_error()
    page = Paginator(selectors.surfaced_pairs(campaign=campaign, reason=reason), PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "campaign": campaign,
        "reason": reason,
        "reasons": [("", "All"), *REASON_LABELS.items()],
        "page": page,
        "rows": selectors.pair_reviews(page.object_list),
    }
    template = RESULTS_TEMPLATE if request.htmx else PAGE_TEMPLATE
    response = TemplateResponse(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
