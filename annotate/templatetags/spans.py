"""Answers as HTML with their spans: words that carry their offsets (labeling), highlights from offsets (review).

Every piece of user text goes through `format_html`, which escapes it: a highlight is cut from the text by
offsets and never from HTML, so an answer holding `<script>` shows those characters, marked or not.
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from annotate.spans import marked, pieces

register = template.Library()


@register.simple_tag
def answer_words(text: str) -> SafeString:
    """Render the text as words with their offsets (`data-start`/`data-end`) for static/js/spans.js to mark."""
    return format_html_join(
        "",
        "{}",
        (
            (format_html('<span class="w" data-start="{}" data-end="{}">{}</span>', p.start, p.end, p.text),)
            if p.is_word
            else (p.text,)
            for p in pieces(text)
        ),
    )


@register.simple_tag
def answer_marked(text: str, spans: list[dict]) -> SafeString:
    """Render the text with the spans highlighted (`<mark>`), each titled with its hallucination types."""
    return format_html_join(
        "",
        "{}",
        (
            (format_html('<mark class="span-mark" title="{}">{}</mark>', _title(m.types), m.text),)
            if m.marked
            else (m.text,)
            for m in marked(text, spans)
        ),
    )


def _title(types: tuple[str, ...]) -> str:
    """Name the hallucination types of a highlight, or just "span" when none was given."""
    return ", ".join(kind for kind in types if kind) or "span"
