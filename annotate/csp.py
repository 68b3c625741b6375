"""The Content-Security-Policy middleware: django-csp's, with the policy widened for the API docs pages only.

The policy itself is CONTENT_SECURITY_POLICY in settings: our own scripts and styles only, no inline code,
no eval. Swagger UI and Redoc (served from drf-spectacular-sidecar, never a CDN) start from one inline
script, which templates/drf_spectacular/ marks with the request's nonce; besides that, Swagger UI's
stylesheet draws its icons as `data:` images, and Redoc injects <style> elements at run time (styled-components,
which cannot take our nonce) and parses the schema in a `blob:` worker. Those allowances are granted to the two
documentation pages and to nothing else, so a page of user data never runs under them.
"""

from __future__ import annotations

from csp.constants import NONCE, SELF, UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.http import HttpRequest, HttpResponseBase

DATA = "data:"
BLOB = "blob:"

# url name -> directives added to the policy for that page.
WIDER_POLICIES: dict[str, dict[str, list[str]]] = {
    "api-docs": {"img-src": [DATA], "style-src": [NONCE]},
    "api-redoc": {"img-src": [DATA], "style-src": [UNSAFE_INLINE], "worker-src": [SELF, BLOB]},
}


class PolicyMiddleware(CSPMiddleware):
    """Send CONTENT_SECURITY_POLICY, widened by WIDER_POLICIES on the pages named there."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        match = getattr(request, "resolver_match", None)
        wider = WIDER_POLICIES.get(match.url_name) if match is not None else None
        if wider is not None and not report_only and parts.update is None:
            parts.update = wider
        return parts
