"""Throttles on password guessing, shared by the login form (views/auth.py) and POST /api/v1/auth/token/.

Both are DRF's `SimpleRateThrottle`: a window of timestamps per key in Django's default cache, which every web
process shares for the limit to hold: the database cache table by default, Redis with CACHE_URL=redis://…
(settings.CACHES; `check --deploy` warns of a per-process cache, annotate/checks.py). Rates are
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["auth"] and ["auth_client"].
Every sign-in attempt counts, successful or not: a script that guesses right on its 31st try is still slowed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle

# Usernames are at most 150 characters (Django's User); more is cut before hashing.
MAX_USERNAME_CHARS = 150


def username_tried(request: HttpRequest) -> str:
    """Return the username a sign-in attempt names, whatever the body held ("" when none)."""
    # A DRF request has parsed `data` (JSON or form); a Django request has POST.
    data = getattr(request, "data", None)
    if data is None:
        data = request.POST
    # The body may be any JSON, a list too; the form or serializer, not the throttle, says why it is not valid.
    return str(data.get("username", ""))[:MAX_USERNAME_CHARS] if isinstance(data, Mapping) else ""


class AuthThrottle(SimpleRateThrottle):
    """Limit password guesses per client address and username tried."""

    scope = "auth"

    def get_cache_key(self, request, view):
        # Hashed: a cache key must stay short and printable whatever was typed (memcached refuses the rest).
        digest = hashlib.sha256(username_tried(request).encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": f"{self.get_ident(request)}:{digest}"}


class AuthClientThrottle(SimpleRateThrottle):
    """Limit sign-in attempts per client address, whichever usernames it tries (password spraying)."""

    scope = "auth_client"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


AUTH_THROTTLES = (AuthClientThrottle, AuthThrottle)
