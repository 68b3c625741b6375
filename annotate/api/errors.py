"""The one place that turns errors into JSON: `{"detail": ..., "fields": {...}}` (API.md, "REST API")."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.exceptions import ApplicationError


def _field_messages(detail: object) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {key: [str(m) for m in (value if isinstance(value, list) else [value])] for key, value in detail.items()}
    return {"non_field_errors": [str(m) for m in (detail if isinstance(detail, list) else [detail])]}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Map ApplicationError subclasses to their status; give DRF validation errors a `detail` too."""
    if isinstance(exc, ApplicationError):
        body: dict = {"detail": exc.message}
        extra = dict(exc.extra)
        if "fields" in extra:
            body["fields"] = {key: [str(value)] for key, value in extra.pop("fields").items()}
        body.update(extra)
        return Response(body, status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            {"detail": "The request is not valid.", "fields": _field_messages(exc.detail)},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return drf_exception_handler(exc, context)


@csrf_exempt  # nothing is done here, so a POST to a wrong address gets this 404 rather than a CSRF page
def not_found(request: HttpRequest) -> JsonResponse:
    """Answer an address under /api/ that names no endpoint (a mistyped path, an id that is not a number) in JSON.

    Without it Django's HTML 404 page answers, and API clients get a body they cannot read.
    """
    return JsonResponse({"detail": f"No endpoint at {request.path}."}, status=status.HTTP_404_NOT_FOUND)
