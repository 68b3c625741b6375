"""Signing in and out, and the page decorator that sends anonymous users to the login form."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

from annotate.throttles import AUTH_THROTTLES

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])

TOO_MANY_REQUESTS = 429


class ThrottledLoginView(auth_views.LoginView):
    """Django's login form, throttled like POST /api/v1/auth/token/ (annotate/throttles.py).

    Past the limit the form comes back with 429, a Retry-After header and a message that says when to try
    again; the password is not checked at all, so a guess made then tells the guesser nothing.
    """

    redirect_authenticated_user = True
    throttle_classes = AUTH_THROTTLES
    # FormView would take PUT as a POST; a browser form only ever posts.
    http_method_names = ["get", "head", "post", "options"]

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        wait = self.throttle_wait(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        seconds = max(1, math.ceil(wait))
        # Unbound: binding the form would validate it, and validating it checks the password.
        form = self.get_form_class()(request, initial={"username": request.POST.get("username", "")})
        message = f"Too many sign-in attempts from here. Try again in {seconds} seconds."
        response = self.render_to_response(self.get_context_data(form=form, throttled=message))
        response.status_code = TOO_MANY_REQUESTS
        response["Retry-After"] = str(seconds)
        return response

    def throttle_wait(self, request: HttpRequest) -> float | None:
        """Count this attempt against every throttle; return the longest wait asked for, or None to go on."""
        waits = []
        for throttle in (cls() for cls in self.throttle_classes):
            if not throttle.allow_request(request, self):
                waits.append(throttle.wait() or 0.0)
        return max(waits) if waits else None


login = ThrottledLoginView.as_view()
# Django's LogoutView accepts POST only: a link or a prefetch cannot sign anyone out.
logout = auth_views.LogoutView.as_view()


def login_required(view: _View) -> _View:
    """Send an anonymous user to the login form, then back to the page they wanted.

    An htmx request (a poll or a form on a page whose session has ended) must not get the login page
    swapped into a fragment, so it gets `HX-Redirect` instead and the whole tab goes to the form.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            back_to = request.htmx.current_url_abs_path or resolve_url(settings.LOGIN_REDIRECT_URL)
            query = urlencode({"next": back_to})
            return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{query}")
        return redirect_to_login(request.get_full_path())

    return wrapper  # type: ignore[return-value]
