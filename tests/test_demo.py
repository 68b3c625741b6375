"""A quiet first run (issue 18, item 6): what `make demo` prints is the logins and the address, not warnings a
newcomer must wonder about (WhiteNoise's "No directory at: …/var/static/", Celery's superuser warning and its
"No hostname was supplied").

The demo's own commands run here as `make demo` runs them, on the test database and a fresh var/ folder (as in
a fresh clone): `demo_setup`, then the Makefile's `demo-serve` (collectstatic, the worker and runserver), until
the login page and a static file answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.conftest import free_port, subprocess_env, wait_for

NOISE = ("No directory at", "No hostname was supplied", "superuser privileges", "Traceback")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.django_db(transaction=True)
def test_the_demo_prints_logins_and_address_and_no_warnings(tmp_path):
    env = {**subprocess_env(settings), "REWARDLAB_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(settings.BASE_DIR)}
    setup = subprocess.run(
        [sys.executable, "manage.py", "demo_setup"], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stderr
    port = free_port()
    log = tmp_path / "demo.log"
    venv = Path(sys.executable).parent.parent
    with log.open("w") as out:
        serve = subprocess.Popen(
            ["make", "--no-print-directory", "demo-serve", f"VENV={venv}", f"DEMO_PORT={port}"],
            env=env, cwd=settings.BASE_DIR, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/login/"), timeout=90, what="the demo's web server")
        assert _answers(f"http://127.0.0.1:{port}/static/css/app.css")
        # The worker's banner ends with its queues; its warnings, if any, come before it.
        wait_for(lambda: "[queues]" in log.read_text(), timeout=60, what="the demo's worker")
        # What the demo prints while it runs; the test's SIGTERM to the whole group may interrupt an interpreter
        # already shutting down, whose "Exception ignored" traceback is the kill's, not the demo's.
        running = log.read_text()
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
    printed = setup.stdout + setup.stderr + running
    assert "http://127.0.0.1:8000" in setup.stdout and "annotator1-demo-pw" in setup.stdout
    assert f"Starting development server at http://127.0.0.1:{port}/" in printed
    assert [line for line in printed.splitlines() if any(noise in line for noise in NOISE)] == [], printed
