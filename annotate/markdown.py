"""Campaign instructions: Markdown written by leads, turned into HTML that is safe to show annotators.

Markdown passes raw HTML through untouched, so its output is never trusted: nh3 (Rust's ammonia) then
keeps only the tags below, drops every attribute but a link's `href` and `title`, and every URL that is
not http, https or mailto (`javascript:`, `data:`, relative ones). Scripts and styles go with their
content; other tags (images, iframes, forms, tables) go and leave their text.
"""

from __future__ import annotations

import markdown as md
import nh3

ALLOWED_TAGS = frozenset(
    {"p", "br", "em", "strong", "code", "pre", "ul", "ol", "li", "a", "blockquote", "hr", "h3", "h4", "h5", "h6"}
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# The page's own headings are h1 and h2, so a lead's "#" becomes h3 ("##" h4, ...).
HEADING_BASE_LEVEL = 3
# nl2br: a single newline is a line break, as instructions written before Markdown expect (they were
# shown with Django's `linebreaks`). toc is here only for `baselevel`; its "[TOC]" marker is switched off.
EXTENSIONS = ("fenced_code", "nl2br", "sane_lists", "toc")
EXTENSION_CONFIGS = {"toc": {"baselevel": HEADING_BASE_LEVEL, "marker": ""}}

_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",
    link_rel="noopener noreferrer",
    # A link in the instructions opens beside the labeling page rather than replacing it.
    set_tag_attribute_values={"a": {"target": "_blank"}},
)


def render_markdown(text: str) -> str:
    """Return the sanitized HTML of a lead's Markdown; safe to mark safe in a template."""
    if not text:
        return ""
    html = md.markdown(text, extensions=list(EXTENSIONS), extension_configs=EXTENSION_CONFIGS)
    return _cleaner.clean(html)
