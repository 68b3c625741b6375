"""Deployment settings (issue 7, item 4): with DEBUG off and the production environment, Django's own
`check --deploy` is clean, cookies travel only over HTTPS, HSTS is sent, and every response carries a
Content-Security-Policy with no inline script.

Settings are read once, at import, from the environment (API.md), so each case runs a fresh Python process
with the production environment, as a deployment would start it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.checks import run_checks

HOST = "rewardlab.example.org"
PRODUCTION = {
    "DEBUG": "0",
    "REWARDLAB_HTTPS": "1",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": HOST,
}
# What `check --deploy` says of the same settings without HTTPS: the check is not one that can only pass.
HTTPS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")

# Run in the production process: a user signs in over HTTPS, and the answers' headers and cookies are printed.
PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

get_user_model().objects.create_user(username="deploy-probe", password="pw-deploy-probe")
client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
plain = client.get("/login/")
page = client.get("/login/", secure=True)
signed_in = client.post("/login/", {"username": "deploy-probe", "password": "pw-deploy-probe"}, secure=True)
proxied = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0]).get("/login/", headers={"X-Forwarded-Proto": "https"})
cookies = {name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"]), "samesite": c["samesite"]}
           for response in (page, signed_in) for name, c in response.cookies.items()}
print(json.dumps({
    "plain": [plain.status_code, plain.headers.get("Location", "")],
    "headers": dict(page.headers),
    "signed_in": signed_in.status_code,
    "cookies": cookies,
    "proxied": proxied.status_code,
}))
"""


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "annotate.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _database_url() -> str:
    """The test database, for a process started by the test."""
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_check_deploy_is_clean_in_production():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_plain_http_lacks():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], {**PRODUCTION, "REWARDLAB_HTTPS": "0"})

    assert result.returncode != 0
    for warning in HTTPS_WARNINGS:
        assert warning in result.stderr, result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = _run(["manage.py", "check"], {**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_production_answers_with_hsts_secure_cookies_and_a_strict_policy():
    env = {**PRODUCTION, "DATABASE_URL": _database_url(), "REWARDLAB_BEHIND_PROXY": "1"}
    result = _run(["-c", PROBE], env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["plain"] == [301, f"https://{HOST}/login/"], "plain HTTP is redirected to HTTPS"
    assert seen["proxied"] == 200, "behind the proxy, its X-Forwarded-Proto says the request was HTTPS"
    headers = seen["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = dict((directive.split(" ", 1) + [""])[:2] for directive in headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'", "no inline script, no eval, and no nonce on a page that needs none"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert seen["signed_in"] == 302
    cookies = seen["cookies"]
    assert set(cookies) == {"csrftoken", "sessionid"}
    assert all(cookie["secure"] for cookie in cookies.values()), cookies
    assert cookies["sessionid"]["httponly"], "scripts never read the session cookie"
    assert all(cookie["samesite"] == "Lax" for cookie in cookies.values()), cookies


def _warning_ids() -> set[str]:
    return {message.id for message in run_checks(include_deployment_checks=True)}


def test_check_deploy_warns_when_sign_in_attempts_would_be_counted_per_process(settings):
    """Issue 18, item 7: the throttles count in the default cache, and one in process memory multiplies the limit."""
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert "rewardlab.W001" not in _warning_ids(), "the default is shared by every process"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert "rewardlab.W001" in _warning_ids()
