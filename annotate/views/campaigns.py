"""The home page: the user's campaigns, their role in each, and what they can do there."""

from __future__ import annotations

from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.http import require_safe

from annotate.selectors import campaign_rows
from annotate.views.auth import login_required


@require_safe
@login_required
def campaign_list(request: HttpRequest) -> TemplateResponse:
    """List the user's campaigns: Label for annotators, Import data for leads, model pages for leads and researchers."""
    return TemplateResponse(request, "campaigns/list.html", {"rows": campaign_rows(request.user)})
