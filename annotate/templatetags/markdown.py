"""The `markdown` filter: a lead's Markdown instructions as sanitized HTML (annotate/markdown.py)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from annotate.markdown import render_markdown

register = template.Library()


@register.filter(is_safe=True)
def markdown(text: str | None) -> SafeString:
    """Render Markdown safely: `{{ campaign.instructions|markdown }}`; unsafe markup is removed, not escaped."""
    # nh3 has already dropped every tag and attribute outside the allow-list, so the result may be marked safe.
    return mark_safe(render_markdown(text or ""))
