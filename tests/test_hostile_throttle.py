"""Password guessing is throttled (issue 7, item 3): the login form and POST /api/v1/auth/token/ answer 429
after the limit, per client address and username, and per client address alone, on the real Redis cache.

Web processes share the throttle's counts in the database cache table by default (the last test starts three
gunicorn workers to prove it) or in Redis when CACHE_URL names one. The other tests count in Redis, that of
CACHE_URL or, without it, of CELERY_BROKER_URL, each test under a key prefix of its own so that runs side by
side never count each other's attempts.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
import requests
from django.core.cache import caches
from rest_framework.test import APIClient

from annotate.throttles import AuthClientThrottle, AuthThrottle
from tests.conftest import wait_for

TOKEN_URL = "/api/v1/auth/token/"
LOGIN_URL = "/login/"
PER_USERNAME = AuthThrottle().num_requests
PER_CLIENT = AuthClientThrottle().num_requests
ADDRESS, OTHER_ADDRESS = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def redis_cache(settings):
    """Django's default cache on the real Redis, under a key prefix no other test or run shares."""
    url = os.environ.get("CACHE_URL") or os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        raise pytest.UsageError("The throttle tests need Redis: set CACHE_URL or CELERY_BROKER_URL=redis://...")
    prefix = f"rewardlab-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix}
    }
    server = redis.Redis.from_url(url)
    yield server, prefix
    for key in server.scan_iter(match=f"{prefix}:*"):
        server.delete(key)


def _token(client: APIClient, username: str, password: str, address: str = ADDRESS, **headers):
    return client.post(TOKEN_URL, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def _login(client, username: str, password: str, address: str = ADDRESS):
    return client.post(LOGIN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_limits_are_small_enough_to_matter():
    assert 0 < PER_USERNAME <= PER_CLIENT <= 1000
    assert AuthThrottle().duration == AuthClientThrottle().duration == 60


def test_token_endpoint_answers_429_after_the_limit_per_client_and_username(campaign, redis_cache):
    server, prefix = redis_cache
    client = APIClient()
    for _ in range(PER_USERNAME):
        assert _token(client, "ann1", "wrong").status_code == 400

    refused = _token(client, "ann1", "pw-ann1")
    assert refused.status_code == 429, "past the limit even the right password gets no token"
    assert "token" not in refused.json()
    assert "available in" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert list(server.scan_iter(match=f"{prefix}:*throttle_auth_*")), "the counts are in Redis"

    assert _token(client, "ann2", "pw-ann2").status_code == 200, "another username from here is not refused"
    assert _token(client, "ann1", "pw-ann1", OTHER_ADDRESS).status_code == 200, "nor this one from elsewhere"


def test_token_throttle_is_not_escaped_by_a_forged_forwarded_for(campaign, redis_cache):
    client = APIClient()
    for attempt in range(PER_USERNAME):
        forged = {"HTTP_X_FORWARDED_FOR": f"10.0.0.{attempt}"}
        assert _token(client, "ann1", "wrong", **forged).status_code == 400
    assert _token(client, "ann1", "wrong", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_token_endpoint_answers_429_to_a_client_spraying_usernames(campaign, redis_cache):
    client = APIClient()
    for attempt in range(PER_CLIENT):
        assert _token(client, f"nobody-{attempt}", "password1").status_code == 400
    assert _token(client, "ann1", "pw-ann1").status_code == 429
    assert _token(client, "ann1", "pw-ann1", OTHER_ADDRESS).status_code == 200


def test_login_form_answers_429_with_a_clear_message_after_the_limit(client, campaign, redis_cache):
    for _ in range(PER_USERNAME):
        response = _login(client, "ann1", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()

    refused = _login(client, "ann1", "pw-ann1")
    body = refused.content.decode()
    assert refused.status_code == 429
    assert "Too many sign-in attempts from here. Try again in" in body
    assert 0 < int(refused["Retry-After"]) <= 60
    assert 'value="ann1"' in body, "the form comes back with the username typed"
    assert "_auth_user_id" not in client.session, "the right password past the limit signs nobody in"

    assert _login(client, "ann1", "pw-ann1", OTHER_ADDRESS).status_code == 302, "another address signs in"


def test_login_form_answers_429_to_a_client_spraying_usernames(client, campaign, redis_cache):
    for attempt in range(PER_CLIENT):
        assert _login(client, f"nobody-{attempt}", "password1").status_code == 200
    assert _login(client, "ann2", "pw-ann2").status_code == 429
    assert "_auth_user_id" not in client.session


def test_login_and_token_share_one_count(client, campaign, redis_cache):
    """Guesses split between the form and the API are one guesser's guesses."""
    half = PER_USERNAME // 2
    for _ in range(half):
        assert _login(client, "ann1", "wrong").status_code == 200
    api = APIClient()
    for _ in range(PER_USERNAME - half):
        assert _token(api, "ann1", "wrong").status_code == 400
    assert _login(client, "ann1", "pw-ann1").status_code == 429
    assert _token(api, "ann1", "pw-ann1").status_code == 429


def test_the_window_passes_and_sign_in_works_again(client, campaign, redis_cache, monkeypatch):
    for _ in range(PER_USERNAME):
        _login(client, "ann1", "wrong")
    assert _login(client, "ann1", "pw-ann1").status_code == 429

    later = time.time() + AuthThrottle().duration + 1
    for throttle in (AuthThrottle, AuthClientThrottle):
        monkeypatch.setattr(throttle, "timer", staticmethod(lambda: later))
    assert _login(client, "ann1", "pw-ann1").status_code == 302


def test_the_redis_cache_is_the_one_counting(redis_cache):
    server, prefix = redis_cache
    caches["default"].set("probe", 1)
    assert server.exists(f"{prefix}:1:probe")


@pytest.mark.django_db(transaction=True)
def test_several_gunicorn_workers_with_default_settings_count_together(campaign, start_web):
    """Issue 18, item 7: started as API.md says (no CACHE_URL), three worker processes keep one count, so the
    31st wrong password within the minute is refused whichever process answers it."""
    server = start_web(workers=3, threads=1)
    try:
        statuses = [
            requests.post(
                f"{server.url}{TOKEN_URL}", data={"username": "ann1", "password": "wrong"}, timeout=30
            ).status_code
            for _ in range(PER_USERNAME + 1)
        ]
        assert statuses == [400] * PER_USERNAME + [429]
        answered = wait_for(lambda: len(server.answered()) > PER_USERNAME and server.answered(), what="access log")
        pids = {pid for pid, _, path in answered if path == TOKEN_URL}
        assert len(pids) > 1, f"one process answered every attempt ({pids}): the test proves nothing"
    finally:
        caches["default"].clear()  # the counts outlive the test: the cache table is no model's, so never flushed
