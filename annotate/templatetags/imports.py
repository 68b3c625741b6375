"""Template filters for import jobs."""

from __future__ import annotations

from django import template

from annotate.exceptions import import_error_where

register = template.Library()


@register.filter
def error_where(error: dict) -> str:
    """Where a stored import error is, as the API and the command say it: `{{ error|error_where }}`."""
    return import_error_where(error)
