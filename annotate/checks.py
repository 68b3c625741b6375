"""System checks of the deployment (`manage.py check --deploy`) that Django's own do not make."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

# Cache backends whose entries live in one process's memory (or nowhere): sign-in throttles counted there
# allow the limit once per web process (issue 18, item 7).
PER_PROCESS_CACHES = frozenset(
    {"django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache"}
)


@checks.register(checks.Tags.security, deploy=True)
def check_throttle_cache_is_shared(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Warn when the default cache, where sign-in attempts are counted, is not shared by the web processes."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PER_PROCESS_CACHES:
        return []
    return [
        checks.Warning(
            f"The default cache is {backend}: each web process counts sign-in attempts on its own, so the "
            "password-guessing limit is multiplied by the number of processes.",
            hint="Leave CACHES to the settings (the database cache table), or set CACHE_URL=redis://... "
            "shared by every web host.",
            id="rewardlab.W001",
        )
    ]
