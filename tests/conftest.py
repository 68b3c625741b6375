"""Shared fixtures. Tests prove things on PostgreSQL and Redis, never on SQLite (DESIGN.md, "Habits")."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Membership
from annotate.services.campaigns import campaign_create, membership_set


def pytest_configure(config: pytest.Config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"The tests run on PostgreSQL, but DATABASE_URL gives {engine}. Run `make test`, or set "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab."
        )


@pytest.fixture(autouse=True)
def _test_settings(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    # Password hashing is deliberately slow; tests create many users and prove nothing about it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    def make(username: str, *, staff: bool = False):
        return get_user_model().objects.create_user(username=username, password="pw-" + username, is_staff=staff)

    return make


@pytest.fixture
def campaign(make_user):
    """A campaign with one user of each role, plus a lead of another campaign."""
    lead = make_user("lead")
    campaign = campaign_create(created_by=lead, name="Demo", overlap=2, gold_share=0.0)
    for username, role in [("ann1", "annotator"), ("ann2", "annotator"), ("res", "researcher")]:
        make_user(username)
        membership_set(campaign=campaign, username=username, role=role)
    other_lead = make_user("otherlead")
    campaign_create(created_by=other_lead, name="Other")
    return campaign


@pytest.fixture
def api_as():
    """Return an API client authenticated by token as the named user."""

    def client_for(username: str) -> APIClient:
        user = get_user_model().objects.get(username=username)
        token, _ = Token.objects.get_or_create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return client_for


ROLES = Membership.Role
