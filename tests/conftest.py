"""Shared fixtures. Tests prove things on PostgreSQL and Redis, never on SQLite (DESIGN.md, "Habits")."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis
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


# A worker on both queues, one task at a time, without the cluster chatter a single test worker does not need.
WORKER_ARGS = (
    "celery -A workers worker -Q cpu,gpu --pool solo --without-mingle --without-gossip --loglevel info".split()
)


@pytest.fixture
def worker_process(django_db_setup, settings, tmp_path):
    """Start a real Celery worker process on the test database and Redis; stop it after the test.

    The worker is a separate OS process, so it sees only committed rows: tests that use it need
    `django_db(transaction=True)`. Its queue is a Redis database of its own, emptied first.
    """
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        raise pytest.UsageError("The worker tests need CELERY_BROKER_URL=redis://...; run `make test`.")
    redis.Redis.from_url(broker).flushdb()
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": broker,
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", *WORKER_ARGS],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=settings.BASE_DIR,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"Timed out after {timeout:.0f}s waiting for {what}.")
