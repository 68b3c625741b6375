"""The status fragment a running job polls (import jobs, model runs, export snapshots; STYLE.md, habit 6)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseStopPolling


def polled_fragment(request: HttpRequest, template: str, context: dict, *, finished: bool) -> HttpResponseBase:
    """Render a job's fragment; once it has finished, answer 286 so that no client keeps polling it.

    The same URL serves a whole page to a request without htmx, so the answer varies on HX-Request.
    """
    if finished:
        response = HttpResponseStopPolling(render_to_string(template, context, request=request))
    else:
        response = TemplateResponse(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
