"""Signing in and out, and the page decorator that sends anonymous users to the login form."""

from __future__ import annotations

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

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])

login = auth_views.LoginView.as_view(redirect_authenticated_user=True)
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
