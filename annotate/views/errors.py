"""Turn RewardLab's domain errors into pages: one place, one partial, the error's own status code.

A plain request gets a whole page around the error. An htmx request gets only the error partial,
retargeted to the `#flash` region of base.html, so the fragment that asked is left as the user had it
(what they typed stays). base.html tells htmx to swap 4xx responses (`responseHandling`), which it
does not do by default.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from django import forms
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django_htmx.http import reswap, retarget

from annotate.exceptions import ApplicationError, ConflictError, NotFoundError, PermissionDeniedError

ERROR_TEMPLATE = "partials/error.html"
# Unprocessable Content: a form was read but refused, and comes back re-rendered with its messages;
# base.html tells htmx to swap it.
INVALID_STATUS = 422
# The live region in base.html, outside every swappable fragment.
FLASH_TARGET = "#flash"

# A heading per error class; the most specific class in the error's MRO wins.
TITLES: dict[type[ApplicationError], str] = {
    NotFoundError: "Not found",
    PermissionDeniedError: "Not allowed",
    ConflictError: "Not possible right now",
    ApplicationError: "Something is not right",
}

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])


def error_title(exc: ApplicationError) -> str:
    """Return the heading shown for this kind of error."""
    for cls in type(exc).__mro__:
        if cls in TITLES:
            return TITLES[cls]
    return TITLES[ApplicationError]


def error_response(request: HttpRequest, exc: ApplicationError) -> TemplateResponse:
    """Render the error with its status code: the partial into `#flash` for htmx, a page otherwise."""
    template = f"{ERROR_TEMPLATE}#error" if request.htmx else ERROR_TEMPLATE
    context = {"error": exc, "title": error_title(exc)}
    response = TemplateResponse(request, template, context, status=exc.status_code)
    if request.htmx:
        reswap(retarget(response, FLASH_TARGET), "innerHTML")
    return response


def renders_errors(view: _View) -> _View:
    """Wrap a page view so an `ApplicationError` it raises becomes `error_response`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except ApplicationError as exc:
            return error_response(request, exc)

    return wrapper  # type: ignore[return-value]


def service_errors_on_form(form: forms.Form, fields: dict[str, str], message: str, *, prefix: str = "") -> None:
    """Show a service's refusal on a form: on each field it names (less `prefix`), above the form when none."""
    for name, text in fields.items():
        name = name.removeprefix(prefix)
        form.add_error(name if name in form.fields else None, text)
    if not fields:
        form.add_error(None, message)
