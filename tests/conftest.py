"""Shared fixtures. Tests prove things on PostgreSQL and Redis, never on SQLite (DESIGN.md, "Habits")."""

from __future__ import annotations

import os
import signal
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
from tests.browser import CHROMIUM, CHROMIUM_ARGS


def pytest_configure(config: pytest.Config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"The tests run on PostgreSQL, but DATABASE_URL gives {engine}. Run `make test`, or set "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab."
        )


@pytest.fixture(scope="session")
def embedding_cache_dir(tmp_path_factory):
    """One embedding cache for the whole run: it is keyed by content, so sharing it changes no result."""
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(autouse=True)
def _test_settings(tmp_path, settings, embedding_cache_dir):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARDLAB_MODEL_DIR = tmp_path / "models"
    settings.REWARDLAB_CACHE_DIR = embedding_cache_dir
    settings.REWARDLAB_DEVICE = "cpu"
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
def start_worker(django_db_setup, settings, tmp_path):
    """Return a function that starts a real Celery worker process on the test database and Redis.

    Workers are separate OS processes, so they see only committed rows: tests that use them need
    `django_db(transaction=True)`. Their queue is a Redis database of its own, emptied first. Every
    worker started is stopped after the test; `hostname` lets a test restart a worker under its name.
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
        "REWARDLAB_MODEL_DIR": str(settings.REWARDLAB_MODEL_DIR),
        "REWARDLAB_CACHE_DIR": str(settings.REWARDLAB_CACHE_DIR),
        "REWARDLAB_DEVICE": "cpu",
        "REWARDLAB_RUN_HEARTBEAT_SECONDS": "1",
        "CELERY_BROKER_URL": broker,
    }
    started: list[tuple[subprocess.Popen, object]] = []

    def start(hostname: str = "test-worker@%h") -> subprocess.Popen:
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", *WORKER_ARGS, "--hostname", hostname],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        process.send_signal(signal.SIGQUIT)  # Celery's cold shutdown: a run in progress is not waited for
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def worker_process(start_worker):
    """One real Celery worker process for the test (see `start_worker`)."""
    return start_worker()


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium (Debian's) driven by Playwright; see tests/browser.py."""
    sync_api = pytest.importorskip("playwright.sync_api")
    # Before Playwright starts its loop: the ORM calls of the test and its fixtures run beside it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright = sync_api.sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    playwright.stop()


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"Timed out after {timeout:.0f}s waiting for {what}.")
