"""Shared fixtures. Tests prove things on PostgreSQL and Redis, never on SQLite (DESIGN.md, "Habits")."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
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


CHILD_APPLICATION_NAME = "rewardlab-test-child"


def subprocess_env(settings) -> dict[str, str]:
    """The environment of a process of the project (a worker, a web server) on the test database and folders."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "REWARDLAB_MODEL_DIR": str(settings.REWARDLAB_MODEL_DIR),
        "REWARDLAB_CACHE_DIR": str(settings.REWARDLAB_CACHE_DIR),
        "REWARDLAB_DEVICE": "cpu",
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", ""),
        # libpq names the process's sessions, so a test can drop theirs and no one else's.
        "PGAPPNAME": CHILD_APPLICATION_NAME,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    env = {**subprocess_env(settings), "REWARDLAB_RUN_HEARTBEAT_SECONDS": "1"}
    started: list[tuple[subprocess.Popen, object]] = []

    def start(hostname: str = "test-worker@%h", *, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a worker; `env_extra` adds to or replaces its environment (another broker, a faster beat)."""
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", *WORKER_ARGS, "--hostname", hostname],
            env={**env, **(env_extra or {})},
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


class RedisServer:
    """A redis-server of the test's own on a free port, which the test may stop and start again on that port.

    Nothing is saved to disk, so a restart comes back empty, as a broker that lost its data does.
    """

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_for(lambda: self._answers(client), timeout=10, interval=0.05, what=f"redis-server on port {self.port}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        self.process = None

    def _answers(self, client: redis.Redis) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"redis-server exited with {self.process.returncode}; see {self.log_path}")
        try:
            return client.ping()
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server for this test alone (`RedisServer`): a broker a test may stop without touching anyone else's."""
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def producer_sends_to(url: str | None) -> None:
    """Point this process's Celery producer at another broker (None: back to the configured one)."""
    from workers.app import app

    # kombu keeps one pool per broker URL; forgetting the app's pools makes it fetch the one for `url`.
    app.conf.broker_write_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def private_broker(private_redis):
    """`private_redis`, and this process's Celery producer sending to it (what live_server's requests send too)."""
    producer_sends_to(private_redis.url)
    yield private_redis
    producer_sends_to(None)


class WebServer:
    """gunicorn serving annotate.wsgi on loopback (gthread: each thread its own database connection)."""

    def __init__(self, *, env: dict[str, str], log_path: Path, threads: int, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # One line per request: the pid of the worker process that answered, the status and the path.
        self.access_log = log_path.with_suffix(".access.log")
        argv = [
            sys.executable, "-m", "gunicorn", "annotate.wsgi", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
            "--timeout", "60", "--graceful-timeout", "5", "--log-level", "warning",
            "--access-logfile", str(self.access_log), "--access-logformat", "%(p)s %(s)s %(U)s",
        ]  # fmt: skip
        with log_path.open("w") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR)
        wait_for(self._answers, timeout=60, interval=0.1, what="gunicorn to answer")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/login/", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def answered(self) -> list[tuple[str, str, str]]:
        """Return (worker pid, status, path) of every request answered so far, in order."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return [tuple(line.split(" ", 2)) for line in text.splitlines()]

    def worker_pids(self) -> set[int]:
        """The pids of gunicorn's worker processes: the same set before and after a fault means no restart."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return {int(pid) for pid in children.split()}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: keep-alive connections are not waited for
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_web(django_db_setup, settings, tmp_path):
    """Return a function that serves the app with gunicorn, a real WSGI server process, on the test database.

    Unlike pytest-django's `live_server` (a thread per request, its connection closed after it), gunicorn's
    threads keep their database connections between requests, as in production. Like workers, it sees only
    committed rows (`django_db(transaction=True)`); every server started is stopped after the test.
    """
    started: list[WebServer] = []
    env = {**subprocess_env(settings), "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1"}

    def start(*, threads: int = 4, workers: int = 1) -> WebServer:
        log_path = tmp_path / f"gunicorn-{len(started)}.log"
        server = WebServer(env=env, log_path=log_path, threads=threads, workers=workers)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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
