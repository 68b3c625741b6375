"""Template filters for model metrics: a metric the run did not record shows as a dash, never as 0."""

from __future__ import annotations

import math

from django import template

from annotate.charts import MISSING
from annotate.charts import percent as _percent

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """Format a 0..1 share as a percentage: `{{ card.accuracy|percent }}` gives "81.3%"."""
    return _percent(value, digits=int(digits))


@register.filter
def metric(value: float | None, digits: int = 3) -> str:
    """Format a score with fixed decimals: `{{ score.entropy|metric:2 }}` gives "0.97"."""
    # A failed template lookup (no score at all) arrives as "", like None.
    if not isinstance(value, int | float) or math.isnan(value):
        return MISSING
    return f"{value:.{int(digits)}f}"


@register.filter
def key_label(value: str) -> str:
    """Turn a JSON key into words for a badge: "suspected_noise" gives "suspected noise"."""
    return str(value).replace("_", " ")


@register.filter
def duration(milliseconds: float | None) -> str:
    """Format a time spent, in milliseconds, as a person reads it: "8.4 s", "3 min 05 s", "1 h 02 min"."""
    if not isinstance(milliseconds, int | float) or math.isnan(milliseconds):
        return MISSING
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
