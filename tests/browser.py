"""What the browser tests share: Debian's Chromium driven by Playwright, the viewports, signing in.

Playwright's sync API runs an event loop in the test's thread, so Django's ORM calls beside it would be
refused as "async unsafe"; the `browser` fixture (tests/conftest.py) sets DJANGO_ALLOW_ASYNC_UNSAFE,
Django's documented switch for exactly this case.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots for review (gitignored)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def is_console_error(message) -> bool:
    return message.type == "error"


def watch_problems(page, *, console: Callable[[object], bool] = is_console_error) -> list[str]:
    """Collect the page's uncaught errors and console errors; a test asserts the list stays empty."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: console(message) and problems.append(f"console: {message.text}"))
    return problems


def sign_in(page, base_url: str, username: str) -> None:
    """Sign in through the login form, as a person would (test users' passwords are "pw-<username>")."""
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/")
